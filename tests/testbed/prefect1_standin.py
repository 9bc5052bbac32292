"""A stand-in for the GraphQL API of Prefect Server 1, for tests only.

Prefect Server 1 is Apollo in front of a Python GraphQL service and Hasura over PostgreSQL; Hasura cannot run
in this test bed, so the real server cannot either. This small server answers the few operations the
collection's prefect_project module and a Prefect 1.x (and 0.14/0.15) agent send, with the shapes of the real
schema (PrefectHQ/server ``graphql/schema/projects.graphql``, ``tenants.graphql``, ``agents.graphql``,
``runs.graphql`` and ``schema.graphql``; Hasura's ``project(where: ...)``):

- queries ``tenant { id name slug }``, ``project(where: {name: {_eq: ...}, tenant_id: {_eq: ...}})``, ``hello``
  (the agent's connection test) and, with ``cloud=True`` only, ``auth_info { tenant_id }`` (Prefect Cloud 1;
  Server has no such field);
- mutations ``create_project(input: create_project_input!)`` (``Uniqueness violation.`` on a duplicate name in a
  tenant), ``set_project_description(input: set_project_description_input!)`` (``Update failed`` for an unknown
  id) and ``delete_project(input: delete_project_input!)`` (``success: false`` for an unknown id);
- the agent's ``register_agent(input: register_agent_input!) { id }`` at start (the stand-in keeps the agent, see
  ``agents()``) and its poll ``get_runs_in_queue(input: get_runs_in_queue_input!) { flow_run_ids }``, which, as
  in Prefect Server, marks the agent named by the ``X-PREFECT-AGENT-ID`` header as having queried. The stand-in
  holds no flows and no flow runs, so the queue is always empty and an agent never goes on to its ``flow_run``
  metadata query or to deploying anything: what it proves is that the agent starts, registers and keeps polling.

``variables`` may be an object or a JSON string (Prefect 1's client sends ``json.dumps(variables)``, which
Apollo Server 2 accepts).

It parses just enough GraphQL for that (an operation, its variable definitions, fields with arguments and
selections) and validates what it parses: unknown fields, wrong variable types and missing selections get the
errors Apollo gives, with HTTP 400 when nothing executed. With ``token`` set it wants ``Authorization: Bearer
<token>`` and otherwise answers ``UNAUTHENTICATED`` as Prefect Cloud 1 did (Prefect Server 1 had no auth).
Every request is recorded in ``requests``. It is not Prefect: anything beyond the above is refused.

    python tests/testbed/prefect1_standin.py [--port N] [--token T]   # serve until interrupted
"""

import argparse
import datetime
import json
import re
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATHS = ("/", "/graphql")
ROOT_FIELDS = {
    "query": {"project": "project", "tenant": "tenant", "auth_info": "auth_info", "hello": "String"},
    "mutation": {"create_project": "project_id_payload", "set_project_description": "project_id_payload",
                 "delete_project": "success_payload", "register_agent": "agent_id_payload",
                 "get_runs_in_queue": "runs_in_queue_payload"},
}
SCALARS = ("String",)
OBJECT_FIELDS = {
    "project": ("id", "name", "description", "tenant_id", "created", "updated"),
    "tenant": ("id", "name", "slug", "created"),
    "auth_info": ("tenant_id", "user_id", "api_token_scope"),
    "project_id_payload": ("id",),
    "success_payload": ("success", "error"),
    "agent_id_payload": ("id",),
    "runs_in_queue_payload": ("flow_run_ids",),
}
INPUTS = {  # mutation -> (input type, {field: required})
    "create_project": ("create_project_input", {"tenant_id": True, "name": True, "description": False}),
    "set_project_description": ("set_project_description_input", {"project_id": True, "description": False}),
    "delete_project": ("delete_project_input", {"project_id": True}),
    "register_agent": ("register_agent_input", {"tenant_id": False, "labels": False, "agent_config_id": False,
                                                "type": True, "name": False}),
    "get_runs_in_queue": ("get_runs_in_queue_input", {"tenant_id": True, "before": False, "labels": False}),
}
WHERE_FIELDS = {"id": "uuid", "name": "String", "tenant_id": "uuid", "description": "String"}

TOKEN = re.compile(r'\s+|,|#[^\n]*|(?P<tok>\.\.\.|[{}()\[\]:!$=@]|"(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|[_A-Za-z]\w*)')


class GraphQLError(Exception):
    def __init__(self, message, code="GRAPHQL_VALIDATION_FAILED", path=None):
        super().__init__(message)
        self.message, self.code, self.path = message, code, path

    def as_dict(self):
        error = {"message": self.message, "extensions": {"code": self.code}}
        if self.path:
            error["path"] = self.path
        return error


class Var:
    def __init__(self, name):
        self.name = name


class Field:
    def __init__(self, name, alias, args, selections):
        self.name, self.alias, self.args, self.selections = name, alias, args, selections


# -- parsing -------------------------------------------------------------------------------------------
def tokenize(text):
    tokens, pos = [], 0
    while pos < len(text):
        match = TOKEN.match(text, pos)
        if not match:
            raise GraphQLError("Syntax Error: Unexpected character %r." % text[pos], "GRAPHQL_PARSE_FAILED")
        if match.group("tok"):
            tokens.append(match.group("tok"))
        pos = match.end()
    return tokens


class Parser:
    def __init__(self, text):
        self.tokens, self.pos = tokenize(text), 0

    def peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected=None):
        token = self.peek()
        if token is None or (expected is not None and token != expected):
            raise GraphQLError("Syntax Error: Expected %s, found %s." % (
                expected or "a token", token or "<EOF>"), "GRAPHQL_PARSE_FAILED")
        self.pos += 1
        return token

    def name(self):
        token = self.take()
        if not re.match(r"^[_A-Za-z]\w*$", token):
            raise GraphQLError("Syntax Error: Expected Name, found %s." % token, "GRAPHQL_PARSE_FAILED")
        return token

    def document(self):
        kind, variables = "query", {}
        if self.peek() in ("query", "mutation"):
            kind = self.take()
            if self.peek() not in ("(", "{"):
                self.name()
            if self.peek() == "(":
                variables = self.variable_definitions()
        elif self.peek() == "subscription":
            raise GraphQLError("This stand-in serves no subscriptions.")
        selections = self.selection_set()
        if self.peek() is not None:
            raise GraphQLError("This stand-in takes one operation per request.")
        return kind, variables, selections

    def variable_definitions(self):
        self.take("(")
        out = {}
        while self.peek() != ")":
            self.take("$")
            name = self.name()
            self.take(":")
            out[name] = self.type_ref()
            if self.peek() == "=":
                self.take("=")
                self.value()
        self.take(")")
        return out

    def type_ref(self):
        if self.peek() == "[":
            self.take("[")
            inner = self.type_ref()
            self.take("]")
            text = "[%s]" % inner
        else:
            text = self.name()
        if self.peek() == "!":
            self.take("!")
            text += "!"
        return text

    def selection_set(self):
        self.take("{")
        fields = []
        while self.peek() != "}":
            if self.peek() == "...":
                raise GraphQLError("This stand-in supports no fragments.")
            alias, name = None, self.name()
            if self.peek() == ":":
                self.take(":")
                alias, name = name, self.name()
            args = self.arguments() if self.peek() == "(" else {}
            selections = self.selection_set() if self.peek() == "{" else None
            fields.append(Field(name, alias, args, selections))
        self.take("}")
        return fields

    def arguments(self):
        self.take("(")
        out = {}
        while self.peek() != ")":
            name = self.name()
            self.take(":")
            out[name] = self.value()
        self.take(")")
        return out

    def value(self):
        token = self.peek()
        if token == "$":
            self.take("$")
            return Var(self.name())
        if token == "{":
            self.take("{")
            out = {}
            while self.peek() != "}":
                key = self.name()
                self.take(":")
                out[key] = self.value()
            self.take("}")
            return out
        if token == "[":
            self.take("[")
            items = []
            while self.peek() != "]":
                items.append(self.value())
            self.take("]")
            return items
        token = self.take()
        if token.startswith('"'):
            return json.loads(token)
        if re.match(r"^-?\d", token):
            return float(token) if "." in token else int(token)
        return {"true": True, "false": False, "null": None}.get(token, token)


def substitute(value, variables):
    if isinstance(value, Var):
        return variables.get(value.name)
    if isinstance(value, dict):
        return {key: substitute(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [substitute(item, variables) for item in value]
    return value


# -- the server ----------------------------------------------------------------------------------------
def _now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


class Prefect1StandIn:
    """Start with ``start()`` (or ``with``); ``url`` is the GraphQL endpoint, ``requests`` what was received."""

    def __init__(self, token=None, tenants=1, cloud=False, port=0, host="127.0.0.1"):
        self.token = token
        self.cloud = cloud
        self.lock = threading.Lock()
        self.requests = []
        self.tenants = [{"id": str(uuid.uuid4()), "name": "default-%d" % i, "slug": "default-%d" % i,
                         "created": _now()} for i in range(tenants)]
        self.projects = {}
        self.registered_agents = {}
        self.host = host
        self.port = port
        self.server = None

    # lifecycle
    def start(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                standin._handle(self)

            def do_GET(self):
                standin._reply(self, 404, b"Not Found", "text/plain")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def url(self):
        return "http://%s:%d/graphql" % (self.host, self.port)

    def mutations(self):
        with self.lock:
            return [r for r in self.requests if r.get("operation") == "mutation"]

    def agents(self):
        """The agents that registered, each with ``registered`` and ``last_queried`` (its latest queue poll)."""
        with self.lock:
            return [dict(agent) for agent in self.registered_agents.values()]

    def add_project(self, name, description=None, tenant_id=None):
        project = {"id": str(uuid.uuid4()), "name": name, "description": description,
                   "tenant_id": tenant_id or self.tenants[0]["id"], "created": _now(), "updated": _now()}
        with self.lock:
            self.projects[project["id"]] = project
        return dict(project)

    def find(self, name):
        with self.lock:
            return [dict(p) for p in self.projects.values() if p["name"] == name]

    # HTTP
    @staticmethod
    def _reply(handler, status, body, content_type="application/json"):
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _handle(self, handler):
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        record = {"path": handler.path, "authorization": handler.headers.get("Authorization"),
                  "tenant_header": handler.headers.get("X-PREFECT-TENANT-ID"),
                  "agent_header": handler.headers.get("X-PREFECT-AGENT-ID"), "operation": None, "fields": [],
                  "variables": None}
        with self.lock:
            self.requests.append(record)
        if handler.path.split("?")[0] not in PATHS:
            return self._reply(handler, 404, b"Not Found", "text/plain")
        try:
            payload = json.loads(raw.decode("utf-8"))
            query, variables = payload["query"], payload.get("variables") or {}
            if isinstance(variables, str):
                variables = json.loads(variables) or {}
            if not isinstance(query, str) or not isinstance(variables, dict):
                raise ValueError
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            error = {"message": "POST body must be JSON with query and variables",
                     "extensions": {"code": "BAD_USER_INPUT"}}
            return self._send(handler, 400, {"errors": [error]})
        record["variables"] = variables
        if self.token and handler.headers.get("Authorization") != "Bearer %s" % self.token:
            return self._send(handler, 200, {"data": None, "errors": [
                {"message": "Unauthenticated", "extensions": {"code": "UNAUTHENTICATED"}}]})
        try:
            kind, declared, selections = Parser(query).document()
            record["operation"], record["fields"] = kind, [f.name for f in selections]
            self._validate(kind, declared, selections, variables)
        except GraphQLError as exc:
            return self._send(handler, 400, {"errors": [exc.as_dict()]})
        data, errors = {}, []
        for field in selections:
            key = field.alias or field.name
            try:
                data[key] = self._select(self._resolve(kind, field, variables, handler), field,
                                         ROOT_FIELDS[kind][field.name])
            except GraphQLError as exc:
                exc.path = [key]
                data[key] = None
                errors.append(exc.as_dict())
        body = {"data": data}
        if errors:
            body["errors"] = errors
        return self._send(handler, 200, body)

    def _send(self, handler, status, body):
        return self._reply(handler, status, json.dumps(body).encode("utf-8"))

    # validation, as Apollo does before executing anything
    def _validate(self, kind, declared, selections, variables):
        roots = dict(ROOT_FIELDS[kind])
        if not self.cloud:
            roots.pop("auth_info", None)
        type_name = "Query" if kind == "query" else "Mutation"
        for field in selections:
            if field.name not in roots:
                raise GraphQLError('Cannot query field "%s" on type "%s".' % (field.name, type_name))
            self._validate_selection(field, roots[field.name])
            for var in _variables_in(field.args):
                if var not in declared:
                    raise GraphQLError('Variable "$%s" is not defined.' % var)
                if declared[var].endswith("!") and variables.get(var) is None:
                    raise GraphQLError('Variable "$%s" of required type "%s" was not provided.' % (var, declared[var]))
            if field.name in INPUTS:
                self._validate_input(field, declared, variables)
            elif field.name == "project":
                self._validate_where(field, declared)
            elif field.args:
                raise GraphQLError('Unknown argument "%s" on field "%s".' % (sorted(field.args)[0], field.name))

    def _validate_selection(self, field, type_name):
        if type_name in SCALARS:
            if field.selections is not None:
                raise GraphQLError('Field "%s" must not have a selection since type "%s" has no subfields.' % (
                    field.name, type_name))
            return
        if field.selections is None:
            raise GraphQLError('Field "%s" of type "%s" must have a selection of subfields.' % (field.name, type_name))
        for sub in field.selections:
            if sub.name not in OBJECT_FIELDS[type_name]:
                raise GraphQLError('Cannot query field "%s" on type "%s".' % (sub.name, type_name))
            if sub.selections is not None:
                raise GraphQLError('Field "%s" must not have a selection since its type is a scalar.' % sub.name)

    def _validate_input(self, field, declared, variables):
        type_name, fields = INPUTS[field.name]
        if set(field.args) != {"input"}:
            raise GraphQLError('Field "%s" argument "input" of type "%s!" is required.' % (field.name, type_name))
        given = field.args["input"]
        if isinstance(given, Var):
            if declared[given.name] != type_name + "!":
                raise GraphQLError('Variable "$%s" of type "%s" used in position expecting type "%s!".' % (
                    given.name, declared[given.name], type_name))
            given = variables.get(given.name)
        if not isinstance(given, dict):
            raise GraphQLError('Expected type "%s" to be an object.' % type_name, "BAD_USER_INPUT")
        for key in given:
            if key not in fields:
                raise GraphQLError('Field "%s" is not defined by type "%s".' % (key, type_name), "BAD_USER_INPUT")
        for key, required in fields.items():
            if required and substitute(given.get(key), variables) is None:
                raise GraphQLError('Field "%s.%s" of required type was not provided.' % (type_name, key),
                                   "BAD_USER_INPUT")

    def _validate_where(self, field, declared):
        for key in field.args:
            if key != "where":
                raise GraphQLError('Unknown argument "%s" on field "project" (this stand-in takes where only).' % key)
        where = field.args.get("where", {})
        if not isinstance(where, dict):
            raise GraphQLError('Expected type "project_bool_exp" to be an object.')
        for key, comparison in where.items():
            if key not in WHERE_FIELDS:
                raise GraphQLError("field '%s' not found in type: 'project_bool_exp'" % key)
            if not isinstance(comparison, dict) or set(comparison) != {"_eq"}:
                raise GraphQLError("this stand-in compares %s with _eq only" % key)
            value = comparison["_eq"]
            if isinstance(value, Var):
                want = WHERE_FIELDS[key]
                if declared[value.name].rstrip("!") != want:
                    raise GraphQLError('Variable "$%s" of type "%s" used in position expecting type "%s".' % (
                        value.name, declared[value.name], want))

    # execution
    def _resolve(self, kind, field, variables, handler):
        args = substitute(field.args, variables)
        with self.lock:
            if field.name == "hello":
                return "Hello!"
            if field.name == "tenant":
                return [dict(t) for t in self.tenants]
            if field.name == "auth_info":
                return {"tenant_id": self.tenants[0]["id"] if self.tenants else None, "user_id": None,
                        "api_token_scope": "TENANT"}
            if field.name == "project":
                where = args.get("where", {})
                return [dict(p) for p in self.projects.values()
                        if all(p.get(key) == cond["_eq"] for key, cond in where.items())]
            data = args["input"]
            if field.name in ("register_agent", "get_runs_in_queue"):
                return self._agent_operation(field.name, data, handler.headers.get("X-PREFECT-AGENT-ID"))
            if field.name == "create_project":
                if not any(t["id"] == data["tenant_id"] for t in self.tenants):
                    raise GraphQLError("Foreign key violation.", "INTERNAL_SERVER_ERROR")
                if any(p["name"] == data["name"] and p["tenant_id"] == data["tenant_id"]
                       for p in self.projects.values()):
                    raise GraphQLError("Uniqueness violation.", "INTERNAL_SERVER_ERROR")
                project = {"id": str(uuid.uuid4()), "name": data["name"], "description": data.get("description"),
                           "tenant_id": data["tenant_id"], "created": _now(), "updated": _now()}
                self.projects[project["id"]] = project
                return {"id": project["id"]}
            if field.name == "set_project_description":
                project = self.projects.get(data["project_id"])
                if project is None:
                    raise GraphQLError("Update failed", "INTERNAL_SERVER_ERROR")
                project["description"], project["updated"] = data.get("description"), _now()
                return {"id": project["id"]}
            if field.name == "delete_project":
                return {"success": self.projects.pop(data["project_id"], None) is not None, "error": None}
        raise GraphQLError("unreachable")

    def _agent_operation(self, name, data, agent_id):
        # Called with the lock held.
        tenant_id = data.get("tenant_id")
        if tenant_id is not None and not any(t["id"] == tenant_id for t in self.tenants):
            raise GraphQLError("Foreign key violation.", "INTERNAL_SERVER_ERROR")
        if name == "register_agent":
            if data.get("agent_config_id") is not None:  # no agent configs exist here
                raise GraphQLError("Foreign key violation.", "INTERNAL_SERVER_ERROR")
            agent = {"id": str(uuid.uuid4()), "type": data["type"], "name": data.get("name"),
                     "labels": list(data.get("labels") or []), "tenant_id": tenant_id or self.tenants[0]["id"],
                     "registered": _now(), "last_queried": None, "queries": 0}
            self.registered_agents[agent["id"]] = agent
            return {"id": agent["id"]}
        agent = self.registered_agents.get(agent_id or "")
        if agent is not None:
            agent["last_queried"], agent["queries"] = _now(), agent["queries"] + 1
        return {"flow_run_ids": []}

    def _select(self, value, field, type_name):
        if type_name in SCALARS or value is None:
            return value
        if isinstance(value, list):
            return [self._select(item, field, type_name) for item in value]
        return {(sub.alias or sub.name): value.get(sub.name) for sub in field.selections}


def _variables_in(value):
    if isinstance(value, Var):
        yield value.name
    elif isinstance(value, dict):
        for item in value.values():
            yield from _variables_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from _variables_in(item)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (loopback by default)")
    parser.add_argument("--token")
    parser.add_argument("--cloud", action="store_true", help="answer auth_info like Prefect Cloud 1")
    args = parser.parse_args(argv)
    standin = Prefect1StandIn(token=args.token, cloud=args.cloud, port=args.port, host=args.host).start()
    print("Prefect 1 GraphQL stand-in at %s (tenant %s)" % (standin.url, standin.tenants[0]["id"]), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        standin.stop()


if __name__ == "__main__":
    main()
