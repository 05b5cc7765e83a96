// bot-filter, in JavaScript: drops GitHub events sent by bots, tags the others.
// With `fail: true` in its config, `handle` throws an Error instead: an uncaught exception, as a
// bug would throw it, to see how the router reports one.
let header = "x-bot-filter";
let fail = false;

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
  if (config.fail !== undefined) {
    if (typeof config.fail !== "boolean") {
      throw "fail must be true or false";
    }
    fail = config.fail;
  }
}

export function handle(event) {
  try {
    return filter(event);
  } catch (error) {
    // componentize-js 0.23.0 makes a thrown string the call's error, but an Error object thrown
    // out of an export loses its text: the call traps with "expected a string, received
    // [object]". Throw its text instead, so the router reports what went wrong.
    throw error instanceof Error ? String(error) : error;
  }
}

function filter(event) {
  if (fail) {
    throw new Error(`bot-filter was told to fail on event ${event.id}`);
  }
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
