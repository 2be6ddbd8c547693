"""NGINX (guide: Load Balancer & Reverse Proxy > NGINX Configuration): the configuration as the
running NGINX uses it, and the live public endpoint it serves.

- `nginx` (per web host, ONE round trip): `$SUDO nginx -T` (the files on disk as NGINX reads
  them, includes resolved, parsed with crossplane; the files themselves when `nginx -t` fails),
  `nginx -t`, the worker processes (their user, when they started) and the log files they have
  open, and when each configuration file last changed (its mtime or ctime, whichever is later: a
  file put back with `cp -p` keeps its old mtime, not its ctime). The master starts new workers at
  every (re)load, so the newest workers' start is when the running configuration was loaded: with
  no file changed since, the files are what runs ("running" and "on disk" agree); a file changed
  after it is a "pending reload" (both times are shown), the running configuration is then unknown
  and only the files are judged, while the checks of the public endpoint keep judging the live
  behaviour from outside.
- `public_endpoint` (the deployment): each response the checks judge, fetched once per run
  through `session.access.public()` (the public name at the inventory's address, its CA bundle),
  reduced to status and headers; the port 80 redirect; ALPN.
- `api_burst` / `login_burst`: the opt-in rate-limit actions (never cached).

`nginx -T` prints every file it loaded after a `# configuration file PATH:` line: the dump is
split on those markers, each file parsed on its own, and every `include` replaced by the
directives of the dumped files it matches.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from audit import guide
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

MARKER = re.compile(r"^# configuration file (.+?):\s*$", re.M)
NOISE = re.compile(r"^nginx: (?:the )?configuration file \S+ (?:syntax is ok|test is successful)\n?", re.M)
MAIN = guide.NGINX_CONF
FILES = r"sed -n 's/^# configuration file \(.*\):$/\1/p'"
DUMP = (  # the dump, or the files on disk (one level of includes) when the configuration is invalid
    "$SUDO nginx -T 2>/dev/null || (cd /etc/nginx && for f in /etc/nginx/nginx.conf "
    "$($SUDO sed -n 's/^[[:space:]]*include[[:space:]]\\+\\([^;]*\\);.*/\\1/p' /etc/nginx/nginx.conf); "
    "do for g in $f; do [ -f \"$g\" ] && { echo \"# configuration file $(readlink -f $g):\"; $SUDO cat \"$g\"; "
    "echo; }; done; done)"
)
COMMANDS = {
    "test": "$SUDO nginx -t 2>&1; echo \"exit=$?\"",
    "dump": DUMP,
    "present": f"[ -e {MAIN} ] && echo yes",
    "procs": "echo \"clock $(date +%s.%N) $(cut -d' ' -f1 /proc/uptime) $(getconf CLK_TCK)\"; "
             "for p in $(pgrep -x nginx); do echo \"$(cut -d' ' -f22 /proc/$p/stat) $(stat -c %U /proc/$p)"
             " $(tr '\\0' ' ' < /proc/$p/cmdline)\"; done",
    "mtimes": f"{{ $SUDO nginx -T 2>/dev/null | {FILES}; echo {MAIN}; }} | sort -u"
              " | while read -r f; do $SUDO stat -L -c '%.9Y %.9Z %n' \"$f\"; done",
    "log_fds": "for p in $(pgrep -x nginx); do $SUDO ls -l /proc/$p/fd; done"
               " | grep -o '/var/log/nginx/[^ ]*' | sort -u",
}
REJECTED = (429, 503)  # limit_req_status: NGINX's default is 503
LISTS = {"gzip_types": None, "ssl_protocols": None, "ssl_ciphers": ":"}  # directive -> list separator
DEFAULTS = {"ssl_prefer_server_ciphers": "off"}  # NGINX's own default, where the guide's value is it


# ---------------------------------------------------------------- the configuration tree

@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    file: str = ""
    line: int = 0

    def find(self, name: str, *args: str) -> list[Directive]:
        """Direct children named `name` (whose first args are `args`)."""
        return [d for d in (self.block or []) if d.name == name and d.args[: len(args)] == list(args)]

    def first(self, name: str, *args: str) -> Directive | None:
        found = self.find(name, *args)
        return found[0] if found else None

    def value(self, name: str) -> str | None:
        d = self.first(name)
        return " ".join(d.args) if d else None


@dataclass
class NginxConfig:
    files: dict[str, str]
    root: Directive = field(default_factory=lambda: Directive("main", [], []))
    errors: list[str] = field(default_factory=list)

    @property
    def events(self) -> Directive:
        return self.root.first("events") or Directive("events", [], [])

    @property
    def http(self) -> Directive:
        return self.root.first("http") or Directive("http", [], [])

    def server_listening(self, port: int) -> Directive | None:
        """The first server block with a `listen` on `port` (any address)."""
        for srv in self.http.find("server"):
            if any(re.fullmatch(rf"(?:[\w.\[\]:*-]+:)?{port}", d.args[0]) for d in srv.find("listen")):
                return srv
        return None

    def location(self, path: str, port: int = 443) -> Directive | None:
        srv = self.server_listening(port)
        return next((loc for loc in srv.find("location") if loc.args and loc.args[-1] == path), None) if srv else None

    def upstream(self, name: str) -> Directive | None:
        return self.http.first("upstream", name)


def split_dump(text: str) -> dict[str, str]:
    """path -> file text, in dump order."""
    parts = MARKER.split(NOISE.sub("", text))
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _convert(items: list[dict], file: str, files: dict[str, list], seen: tuple[str, ...]) -> list[Directive]:
    out: list[Directive] = []
    for item in items:
        if item["directive"] == "include" and item["args"]:
            out.append(Directive("include", list(item["args"]), None, file, item.get("line", 0)))
            pattern = item["args"][0]
            pattern = pattern if pattern.startswith("/") else os.path.join(os.path.dirname(MAIN), pattern)
            for path in sorted(p for p in files if fnmatch.fnmatch(p, pattern) and p not in seen):
                out.extend(_convert(files[path], path, files, (*seen, path)))
            continue
        block = _convert(item["block"], file, files, seen) if "block" in item else None
        out.append(Directive(item["directive"], list(item["args"]), block, file, item.get("line", 0)))
    return out


def parse_dump(text: str, main: str = MAIN) -> NginxConfig:
    """The effective configuration from an `nginx -T` dump (includes resolved)."""
    import crossplane

    files = split_dump(text)
    config = NginxConfig(files)
    parsed: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="nginx-dump-") as tmp:
        for i, (path, body) in enumerate(files.items()):
            local = os.path.join(tmp, f"{i}.conf")
            with open(local, "w") as fh:
                fh.write(body)
            cfg = crossplane.parse(local, single=True, comments=False, check_ctx=False, check_args=False)["config"][0]
            parsed[path] = cfg["parsed"]
            config.errors += [f"{path}: {e['error']}" for e in cfg["errors"]]
    main = main if main in parsed else next(iter(parsed), main)
    config.root = Directive("main", [], _convert(parsed.get(main, []), main, parsed, (main,)))
    return config


def parse_test(text: str) -> tuple[bool, str]:
    """(`nginx -t` succeeded, its output) from the test command's output."""
    match = re.search(r"exit=(\d+)\s*$", text)
    ok = bool(match) and match.group(1) == "0" and "test is successful" in text
    return ok, re.sub(r"\s*exit=\d+\s*$", "", text).strip()


# ---------------------------------------------------------------- reading directives

def header_values(location: Directive | None, server: Directive | None, http: Directive | None) -> dict[str, str]:
    """The add_header set that applies in `location`: NGINX inherits add_header from the enclosing
    level only when the level itself has none (the "add_header inheritance trap")."""
    for level in (location, server, http):
        if level is not None and level.find("add_header"):
            return {d.args[0].lower(): " ".join(d.args[1:]) for d in level.find("add_header")}
    return {}


def limit_req_zones(http: Directive) -> dict[str, dict[str, str]]:
    """zone name -> {key, zone, size, rate} from `limit_req_zone KEY zone=NAME:SIZE rate=R`."""
    zones = {}
    for d in http.find("limit_req_zone"):
        info = {"key": d.args[0], **dict(a.partition("=")[::2] for a in d.args[1:])}
        info["zone"], _, info["size"] = info.get("zone", "?").partition(":")
        zones[info["zone"]] = info
    return zones


def limit_req(location: Directive | None) -> dict[str, Any] | None:
    """{zone, burst, nodelay} of a location's `limit_req` (None when it has none)."""
    d = location.first("limit_req") if location is not None else None
    args = dict(a.partition("=")[::2] for a in d.args) if d else None
    return None if args is None else {k: int(v) if k == "burst" else v for k, v in args.items()
                                      if k != "nodelay"} | {"nodelay": "nodelay" in args}


def upstream_servers(upstream: Directive | None) -> list[dict[str, str]]:
    return [{"address": d.args[0], **dict(a.partition("=")[::2] for a in d.args[1:])}
            for d in (upstream.find("server") if upstream is not None else [])]


def proxy_headers(location: Directive | None) -> dict[str, str]:
    return {d.args[0].lower(): " ".join(d.args[1:]) for d in location.find("proxy_set_header")} \
        if location is not None else {}


def listen_flags(server_block: Directive | None) -> list[list[str]]:
    return [d.args for d in server_block.find("listen")] if server_block is not None else []


def has_http2(server_block: Directive | None) -> bool:
    """`listen 443 ssl http2` (or NGINX >= 1.25.1's `http2 on`)."""
    return any("http2" in args for args in listen_flags(server_block)) or (
        server_block is not None and server_block.value("http2") == "on")


def directive_value(block: Directive | None, spec: str, inherit: Directive | None = None) -> Any:
    """The value of `spec` ("name" or "name first-args") in `block` (else in `inherit`, the
    enclosing level): its arguments joined, a list for the list directives, None when absent."""
    name, *args = spec.split()
    d = next((b.first(name, *args) for b in (block, inherit) if b is not None and b.first(name, *args)), None)
    if d is None:
        return DEFAULTS.get(name) if block is not None else None
    if name == "log_format":
        return re.sub(r"\s+", " ", "".join(d.args[1:])).strip()
    if name in LISTS:
        sep = LISTS[name]
        return [p for a in d.args for p in (a.split(sep) if sep else [a]) if p]
    return " ".join(d.args[len(args):])


def text(value: Any) -> Any:
    """An expected value as the configuration writes it (numbers as text; lists and dicts item by item)."""
    if isinstance(value, dict):
        return {k: text(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [text(v) for v in value]
    return str(value).strip()


def with_domain(value: Any, domain: str | None) -> Any:
    """The guide's placeholder domain replaced by the deployment's public name."""
    if isinstance(value, dict):
        return {k: with_domain(v, domain) for k, v in value.items()}
    if isinstance(value, str) and guide.PLACEHOLDER_DOMAIN in value:
        if not domain:
            raise CouldNotAudit(None, "the public name", "the inventory names none (all.vars.audit_public_host "
                                                         "or all.vars.audit_public_url)")
        return value.replace(guide.PLACEHOLDER_DOMAIN, domain)
    return value


def public_host(inventory) -> str | None:
    """The deployment's public name: audit_public_host, else the name in audit_public_url."""
    return inventory.setting("audit_public_host") or urlparse(inventory.setting("audit_public_url") or "").hostname


# ---------------------------------------------------------------- processes and reloads

def workers(text: str) -> list[tuple[float | None, str]]:
    """(start time as epoch seconds, user) of each serving worker process (not those shutting down
    after a reload), from `clock NOW UPTIME HZ` and `STARTTICKS USER CMDLINE` lines."""
    clock = re.search(r"^clock (\S+) (\S+) (\d+)\s*$", text, re.M)
    booted = float(clock.group(1)) - float(clock.group(2)) if clock else None
    return [(booted + int(ticks) / int(clock.group(3)) if clock else None, user)
            for ticks, user, cmd in (line.split(None, 2) for line in text.splitlines() if len(line.split(None, 2)) == 3)
            if ticks.isdigit() and "worker process" in cmd and "shutting down" not in cmd]


def changed_since(mtimes: str, loaded: float | None) -> dict[str, str] | None:
    """The files (`MTIME CTIME PATH` lines, or `MTIME PATH`) changed after `loaded` (the newest
    workers' start), each with when (ISO, the later of its mtime and ctime); None when it is
    unknown (no worker, no clock, no file read)."""
    stamps = []
    for line in mtimes.splitlines():
        parts = line.split(None, 2)
        times = [float(p) for p in parts[:2] if re.fullmatch(r"\d+(?:\.\d+)?", p)]
        if times and len(parts) > len(times):
            stamps.append((max(times), " ".join(parts[len(times):])))
    if loaded is None or not stamps:
        return None
    return {path: iso(stamp) for stamp, path in stamps if stamp > loaded}


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- facts

@dataclass(frozen=True)
class NginxFacts:
    """One web host's NGINX: the configuration on disk and what its running workers show."""

    config: NginxConfig
    test_ok: bool
    test_output: str
    worker_users: tuple[str, ...]        # one per serving worker process
    log_files: tuple[str, ...]           # /var/log/nginx files NGINX has open
    loaded_at: str | None                # when the newest workers started (ISO), None: no worker
    changed: dict[str, str] | None       # files changed since then -> when (None: unknown)
    public_host: str | None

    @property
    def pending(self) -> str:
        """"pending reload: FILE changed T after the master (re)loaded the configuration at T0"
        ('' when no file changed since; what is unknown when it cannot be told)."""
        if self.changed is None:
            return ("when the configuration was loaded is unknown (no worker process, or no file time read): "
                    "the running configuration cannot be told")
        if not self.changed:
            return ""
        files = ", ".join(f"{path} changed {when}" for path, when in sorted(self.changed.items()))
        return f"pending reload: {files}, after the master (re)loaded the configuration at {self.loaded_at}"

    def both(self, shown: Any, value: Any = None, where: str = "nginx -T") -> dict[str, Reading]:
        """A value read from the configuration, on disk and as NGINX runs it: the running side is
        the files' value when no file changed since the master (re)loaded them, else left out
        (pending reload: the on-disk side says so, with both times)."""
        value = shown if value is None else value
        out = {}
        if self.changed == {}:
            out[RUNNING] = Reading(shown, value, f"loaded {self.loaded_at} (workers' start); "
                                                 "no configuration file changed since")
        if not self.test_ok:
            where = "the configuration files (nginx -t fails)"
        out[ON_DISK] = Reading(shown, value, f"{where}; {self.pending}" if self.pending else where)
        return out

    @property
    def https(self) -> Directive | None:
        return self.config.server_listening(443)

    def context(self, name: str) -> tuple[Directive | None, Directive | None]:
        """(block, the level it inherits from) for "main", "events", "http", "https" (the server
        listening on 443) or "location PATH" (of that server)."""
        if name.startswith("location "):
            return self.config.location(name.split(" ", 1)[1]), None
        if name == "https":
            return self.https, self.config.http
        return {"main": self.config.root, "events": self.config.events, "http": self.config.http}[name], None

    def read(self, key: str) -> Any:
        """A catalogue key "CONTEXT: directive[, directive ...]": one value, or a dict of several."""
        context, _, names = key.partition(": ")
        block, inherit = self.context(context)
        specs = [n.strip() for n in names.split(",")]
        values = {spec: directive_value(block, spec, inherit) for spec in specs}
        return values[specs[0]] if len(specs) == 1 else values

    def sides(self, key: str) -> dict[str, Reading]:
        """`key` on disk (nginx -T) and as NGINX runs it: the worker processes' user for `user`;
        for the rest, the files' value when no file changed since the newest workers started."""
        value = self.read(key)
        out = self.both(value)
        if key == "main: user":
            users = sorted(set(self.worker_users))
            out[RUNNING] = Reading(users or "no worker process", users[0] if len(users) == 1 else None,
                                   "ps: the NGINX worker processes' user")
        return out

    def norm(self, key: str, expected: Any) -> Any:
        return text(expected)


@probe()
def nginx(session, host) -> NginxFacts:
    """NGINX on a web host: nginx -T, nginx -t, its workers and their open logs (one round trip)."""
    out = session.access.collect(host, COMMANDS)
    if not out["dump"].strip() and out["present"]:
        raise CouldNotAudit(host.name, f"NGINX configuration {MAIN}",
                            "neither `nginx -T` nor reading the file printed anything (is sudo granted?)")
    ok, test_output = parse_test(out["test"])
    serving = workers(out["procs"])
    loaded = None if any(start is None for start, _ in serving) else max((s for s, _ in serving), default=None)
    return NginxFacts(
        config=parse_dump(out["dump"]), test_ok=ok, test_output=test_output,
        worker_users=tuple(user for _, user in serving), log_files=tuple(out["log_fds"].split()),
        loaded_at=iso(loaded) if loaded else None,
        changed=changed_since(out["mtimes"], loaded), public_host=public_host(session.inventory))


# ---------------------------------------------------------------- the live endpoint

REDIRECT, ALPN = "http:/audit/redirect?q=1", "alpn"  # PublicFacts' keys of the port 80 GET and of ALPN


def hsts_directives(value: str) -> dict[str, str]:
    """'max-age=31536000; includeSubDomains' -> {'max-age': '31536000', 'includesubdomains': ''}."""
    pairs = (part.strip().partition("=") for part in value.split(";"))
    return {name.strip().lower(): arg.strip().strip('"') for name, _, arg in pairs if name}


def header_is(value: str | None, expected: str, name: str = "") -> bool:
    """The header has the guide's value; for HSTS, at least the guide's max-age and all its flags
    ("max-age >= 31536000 with includeSubDomains"; preload may be added)."""
    if value is None:
        return False
    if name.lower() == "strict-transport-security":
        have, want = hsts_directives(value), hsts_directives(expected)
        try:
            longer = int(have.get("max-age", "-1")) >= int(want.get("max-age", "0"))
        except ValueError:
            return False
        return longer and all(k in have for k in want if k != "max-age")
    return value.strip().lower() == expected.strip().lower()


def header_kinds(paths: list[str], static_file: str, missing: str | None) -> dict[str, str]:
    """response kind -> path: "/static/" is the inventory's static file; "404" when errors count."""
    return {p: (static_file if p == "/static/" else p) for p in paths} | ({"404": missing} if missing else {})


@dataclass(frozen=True)
class Answer:
    """One answer of the public endpoint: status and headers (names in lower case), or the error."""

    url: str
    status: int | None
    headers: dict[str, str]
    error: str | None = None

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass(frozen=True)
class PublicFacts:
    """What the public endpoint answered, once per run."""

    host: str                         # the public name
    answers: dict[str, Answer]        # path (REDIRECT: over http; ALPN: the handshake) -> the answer
    missing: str                      # a path that does not exist (an error response)
    static_file: str

    def answer(self, path: str) -> Answer:
        found = self.answers[path]
        if found.error:
            raise CouldNotAudit(None, f"the public endpoint {found.url}", found.error)
        return found

    def kinds(self, paths: list[str], on_errors: bool) -> dict[str, str]:
        return header_kinds(paths, self.static_file, self.missing if on_errors else None)


def fetch(public, path: str, scheme: str | None = None, **kwargs) -> Answer:
    url = f"{scheme or urlparse(public.url).scheme}://{urlparse(public.url).netloc}{path}"
    try:
        resp = public.get(path, scheme=scheme, **kwargs)
    except CouldNotAudit as exc:
        return Answer(url, None, {}, exc.why)
    return Answer(url, resp.status_code, {k.lower(): v for k, v in resp.headers.items()})


@probe(per_host=False)
def public_endpoint(session) -> PublicFacts:
    """The public endpoint's answers that the NGINX checks judge: every response kind of the
    security headers, /api/v1/health (gzip), the static file, /docs, port 80, ALPN."""
    public, static = session.access.public(), session.inventory.settings.static_file
    missing = f"/audit-missing-{uuid.uuid4().hex[:8]}"
    paths = {"/api/v1/health", static, missing, session.expected("NGINX-DOCS-PROXY")["path"]}
    for req in ("HDR-HSTS", "HDR-X-FRAME-OPTIONS", "HDR-X-CONTENT-TYPE-OPTIONS", "HDR-X-XSS-PROTECTION",
                "HDR-REFERRER-POLICY"):
        paths |= set(header_kinds(session.expected(req)["paths"], static, None).values())
    answers = {p: fetch(public, p, headers={"Accept-Encoding": "gzip"}) for p in sorted(paths)}
    answers[REDIRECT] = fetch(public, REDIRECT[len("http:"):], scheme="http")
    where = f"{public.name}:{public.port} (ALPN offering h2, http/1.1)"
    try:
        answers[ALPN] = Answer(where, None, {ALPN: public.alpn(["h2", "http/1.1"])})
    except CouldNotAudit as exc:
        answers[ALPN] = Answer(where, None, {}, exc.why)
    return PublicFacts(public_host(session.inventory) or public.name, answers, missing, static)


# ---------------------------------------------------------------- opt-in bursts (not cached)

API_BURST = 60          # requests, 8 in parallel: well beyond 10 r/s + burst 20
LOGIN_BURST = 8         # beyond 5 r/m + burst 3
BURST_SECONDS = 30      # hard bound of each burst


def count_rejections(statuses: list[int]) -> int:
    return sum(1 for s in statuses if s in REJECTED)


def fire(public, path: str, n: int, workers_: int, deadline: float) -> list[int]:
    """`n` GETs of `path`, `workers_` at a time, none started after `deadline` (those are -1)."""
    def one(_):
        return -1 if time.monotonic() > deadline else public.get(path).status_code

    with ThreadPoolExecutor(workers_) as pool:
        return list(pool.map(one, range(n)))


def api_burst(session) -> dict[str, Any]:
    """10 requests at 5 r/s (within the limit), then 60 fast ones, 8 in parallel, to /api/v1/health.
    At most 70 requests and 30 s."""
    public = session.access.public()
    deadline = time.monotonic() + BURST_SECONDS
    time.sleep(2.5)  # let the zone drain (20 excess at 10 r/s)
    calm = []
    for _ in range(10):
        calm.append(public.get("/api/v1/health").status_code)
        time.sleep(0.2)
    burst = fire(public, "/api/v1/health", API_BURST, 8, deadline)
    return {"calm": calm, "burst": burst, "requests sent": len(calm) + sum(1 for s in burst if s >= 0)}


def login_burst(session) -> dict[str, Any]:
    """8 fast GETs of the login endpoint (no credentials: nothing for fail2ban), then one more
    13 s later (one request regained at 5 r/m). At most 9 requests and 30 s."""
    public = session.access.public()
    path = "/api/v1/auth/login"
    burst = fire(public, path, LOGIN_BURST, 1, time.monotonic() + BURST_SECONDS)
    time.sleep(13)
    return {"burst": burst, "later": public.get(path).status_code, "requests sent": len(burst) + 1}
