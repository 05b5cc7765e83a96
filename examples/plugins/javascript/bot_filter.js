// bot-filter, in JavaScript: drops GitHub events sent by bots, tags the others.
let header = "x-bot-filter";

export function configure(configJson) {
  const config = configJson ? JSON.parse(configJson) : {};
  if (config === null || typeof config !== "object" || Array.isArray(config)) {
    throw "config must be a table";
  }
  if (config.header !== undefined) {
    if (typeof config.header !== "string" || config.header.trim() === "") {
      throw "header must be a non-empty string";
    }
    header = config.header.toLowerCase();
  }
}

export function handle(event) {
  let body;
  try {
    body = JSON.parse(new TextDecoder().decode(event.body));
  } catch {
    return { tag: "drop", val: "the body is not JSON" };
  }
  const sender = body && typeof body === "object" && body.sender && typeof body.sender === "object" ? body.sender : {};
  const login = String(sender.login ?? "");
  if (sender.type === "Bot" || login.endsWith("[bot]")) {
    return { tag: "drop", val: `sender ${login} is a bot` };
  }
  event.headers.push({ name: header, value: "human" });
  return { tag: "forward", val: event };
}
