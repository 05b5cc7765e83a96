"""bot-filter, in Python: drops GitHub events sent by bots, tags the others.

Built into a WebAssembly component by componentize-py (see build.sh):
- `configure` gets the route's `config` table as JSON, e.g. {"header": "x-bot-filter"};
- `handle` gets each event and returns a verdict: a body that is not JSON, or whose
  `sender` is a bot (`type` "Bot", or a login ending in "[bot]"), is dropped with the reason;
  any other event is forwarded with the header `<header>: human`.

With {"fail": true} in its config, `handle` raises a `RuntimeError` instead: an uncaught
exception, as a bug would raise it, to see how the router reports one.
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types

HEADER = "x-bot-filter"
FAIL = False


class WitWorld(wit_world.WitWorld):
    def configure(self, config_json: str) -> None:
        global HEADER, FAIL
        config = json.loads(config_json) if config_json else {}
        if not isinstance(config, dict):
            raise Err("config must be a table")
        header = config.get("header", HEADER)
        if not isinstance(header, str) or not header.strip():
            raise Err("header must be a non-empty string")
        fail = config.get("fail", False)
        if not isinstance(fail, bool):
            raise Err("fail must be true or false")
        HEADER = header.lower()
        FAIL = fail

    def handle(self, event: types.Event) -> types.Verdict:
        if FAIL:
            raise RuntimeError(f"bot-filter was told to fail on event {event.id}")
        try:
            body = json.loads(event.body)
        except ValueError:
            return types.Verdict_Drop("the body is not JSON")
        sender = body.get("sender") if isinstance(body, dict) else None
        sender = sender if isinstance(sender, dict) else {}
        login = str(sender.get("login", ""))
        if sender.get("type") == "Bot" or login.endswith("[bot]"):
            return types.Verdict_Drop(f"sender {login} is a bot")
        event.headers.append(types.Header(HEADER, "human"))
        return types.Verdict_Forward(event)
