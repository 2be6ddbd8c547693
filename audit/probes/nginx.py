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
- `rate_limits` (the deployment, opt-in `burst`, on demand): each zone's accepted burst and refill
  rate, measured once at the public endpoint when a check first needs it (see below).

`nginx -T` prints every file it loaded after a `# configuration file PATH:` line: the dump is
split on those markers, each file parsed on its own, and every `include` replaced by the
directives of the dumped files it matches.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
import re
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from audit import guide
from audit.access import ANSWER
from audit.facts import probe
from audit.judge import ON_DISK, RUNNING, Reading
from audit.outcomes import CouldNotAudit

MARKER = re.compile(r"^# configuration file (.+?):\s*$", re.M)
NOISE = re.compile(r"^nginx: (?:the )?configuration file \S+ (?:syntax is ok|test is successful)\n?", re.M)
MAIN = guide.NGINX_CONF
FILES = r"sed -n 's/^# configuration file \(.*\):$/\1/p'"
DUMP = (  # the dump, or the files on disk (one level of includes) when the configuration is invalid:
    # nginx.conf read as root, the files it includes as the audit account (sudo runs fixed commands)
    "$SUDO nginx -T 2>/dev/null || (cd /etc/nginx && main=$($SUDO cat /etc/nginx/nginx.conf) && "
    "for f in /etc/nginx/nginx.conf $(printf '%s\\n' \"$main\" "
    "| sed -n 's/^[[:space:]]*include[[:space:]]\\+\\([^;]*\\);.*/\\1/p'); "
    "do for g in $f; do [ -f \"$g\" ] && { echo \"# configuration file $(readlink -f $g):\"; "
    "if [ \"$g\" = /etc/nginx/nginx.conf ]; then printf '%s\\n' \"$main\"; else cat \"$g\"; fi; echo; }; done; done)"
)
COMMANDS = {
    "test": "$SUDO nginx -t 2>&1; echo \"exit=$?\"",
    "dump": DUMP,
    "present": f"[ -e {MAIN} ] && echo yes",
    "procs": "echo \"clock $(date +%s.%N) $(cut -d' ' -f1 /proc/uptime) $(getconf CLK_TCK)\"; "
             "for p in $(pgrep -x nginx); do echo \"$(cut -d' ' -f22 /proc/$p/stat) $(stat -c %U /proc/$p)"
             " $(tr '\\0' ' ' < /proc/$p/cmdline)\"; done",
    "mtimes": f"{{ $SUDO nginx -T 2>/dev/null | {FILES}; echo {MAIN}; }} | sort -u"
              " | while read -r f; do stat -L -c '%.9Y %.9Z %n' \"$f\"; done",  # NGINX's files: no sudo
    # the log files NGINX's processes hold open: one fixed find as root, kept to NGINX's pids
    "log_fds": "re=$(pgrep -x nginx | paste -sd'|'); [ -n \"$re\" ] && $SUDO find /proc -mindepth 3 -maxdepth 3 "
               "-lname '/var/log/nginx/*' -ls | grep -E \" /proc/($re)/fd/[0-9]+ -> \" "
               "| grep -o '/var/log/nginx/[^ ]*' | sort -u",
}
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


# ---------------------------------------------------------------- opt-in: the rate limits, measured (burst)
#
# NGINX's limit_req is a leaky bucket per client address (ngx_http_limit_req_module): per key the
# zone keeps an "excess" that drains at the zone's rate; a request adds 1 to it and is accepted
# while the excess stays <= burst (at once, with nodelay), otherwise it is answered with
# limit_req_status and changes nothing. From an empty zone (the excess drained to 0), a request
# that comes after n accepted ones, tau seconds after the first, is therefore accepted exactly when
#     n - rate * tau <= burst.
# The measurement per zone: wait until the zone is empty for this client ((1 + burst) / rate, the
# time a full bucket takes to drain: whatever used it before, such as this audit's own two logins,
# is gone), send GETs back to back until the first rejection (the accepted burst: 1 + burst, plus
# the slots that came back meanwhile), then from that saturation poll at fixed times, from half a
# slot's time to 1.25 times the time that `slots` slots need to come back (the refill). Every
# answer, with the time it was sent and received, is one inequality on (burst, rate): `fit` keeps
# the integer bursts and the interval of rates that explain every answer. GETs only: the login
# location answers 405 when the zone lets a GET through (no credentials, nothing for fail2ban).

API_PATH = "/api/v1/health"  # what is requested in location /api/
WARM_UP = "/health"  # a location without limit_req: it opens the connection before a burst
ZONE_PLANS = (  # (the zone's requirement, the location's requirement, the path requested, slots)
    ("RATE-ZONE-API", "RATE-API-LIMIT", API_PATH, 10),
    ("RATE-ZONE-LOGIN", "RATE-LOGIN-LIMIT", None, 1),  # None: the location's own path
)
DRAIN_MARGIN = 1.0  # seconds on top of (1 + burst) / rate
BURST_SECONDS = 10  # a burst still unsaturated after this is not tight: it stops there
CLOCK_SLACK = 0.001  # NGINX reads the time in whole milliseconds


def nginx_rate(rate: str) -> float:
    """Requests per second as NGINX keeps a zone's `rate=` (integer thousandths per second)."""
    m = re.fullmatch(r"\s*(\d+)\s*r/([sm])\s*", str(rate))
    if not m:
        raise ValueError(f"not a limit_req_zone rate: {rate!r}")
    return int(m.group(1)) * 1000 // (60 if m.group(2) == "m" else 1) / 1000


def show_rate(per_second: float, unit: str) -> str:
    """A rate in the guide's unit ("r/m" or "r/s")."""
    value = per_second * (60 if unit == "m" else 1)
    return "unbounded" if value == float("inf") else f"{value:.3g} r/{unit}"


@dataclass(frozen=True)
class ZonePlan:
    """One zone as the guide sets it, and how it is measured."""

    zone: str
    location: str
    path: str
    rate: str                  # as the guide writes it: "10r/s", "5r/m"
    burst: int
    slots: int                 # refilled slots to watch after the burst
    rejected: tuple[int, ...]  # the location's limit_req_status (NGINX's default: 503)

    @property
    def per_second(self) -> float:
        return nginx_rate(self.rate)

    @property
    def unit(self) -> str:
        return self.rate.strip()[-1]

    @property
    def drain_s(self) -> float:
        return (self.burst + 1) / self.per_second + DRAIN_MARGIN

    @property
    def cap(self) -> int:
        """Requests of the burst at most: 4 times the guide's, and some."""
        return 4 * (self.burst + 1) + 8

    @property
    def poll_every(self) -> float:
        """1/20 of the watched slots' time, a quarter of one slot's at most."""
        return min(self.slots / 20, 0.25) / self.per_second

    def poll_times(self, burst_s: float = 0.0) -> list[float]:
        """When to poll, in seconds after the last accepted request of the burst (that took
        `burst_s`): at twice, four times, ... the burst's time while under half a slot's time (the
        rejections there bound a fast refill: they tell a small burst refilled during the burst
        from the guide's), then every `poll_every`, from half a slot's time to 1.25 times the
        time that `slots` slots need to come back."""
        start, end = 0.5 / self.per_second, 1.25 * self.slots / self.per_second + self.poll_every
        early, step = [], max(burst_s, 0.01)
        while (step := step * 2) < start:
            early.append(step)
        return early + [start + i * self.poll_every for i in range(int((end - start) / self.poll_every) + 1)]

    def bound(self) -> tuple[int, float]:
        """(requests, seconds) at most: the burst and the polls; the drain, the burst's 10 s, the
        polls' window and one answer's timeout."""
        polls = self.poll_times()  # the early polls are most with the shortest burst
        return self.cap + len(polls), round(self.drain_s + BURST_SECONDS + polls[-1] + ANSWER, 1)


@dataclass(frozen=True)
class Timed:
    """One answer: sent and received (seconds after the first request was sent), its status."""

    sent: float
    received: float
    status: int


def measure(get: Callable[[str], int], plan: ZonePlan, clock: Callable[[], float] = time.monotonic,
            sleep: Callable[[float], None] = time.sleep) -> tuple[Timed, ...]:
    """The burst and the polls of one zone (the zone must be empty: the caller waited). A GET of
    WARM_UP (no limit_req there) first opens the connection that the burst reuses, so that no
    answer's time includes a TLS handshake."""
    get(WARM_UP)
    answers: list[Timed] = []
    origin: list[float] = []

    def send() -> bool:
        start = clock()
        origin[:] = origin or [start]
        status = get(plan.path)
        answers.append(Timed(round(start - origin[0], 4), round(clock() - origin[0], 4), status))
        return status not in plan.rejected

    while len(answers) < plan.cap and (not answers or answers[-1].sent < BURST_SECONDS) and send():
        pass
    if answers[-1].status not in plan.rejected or len(answers) < 2:
        return tuple(answers)  # never saturated, or rejected from the first request: nothing to poll
    saturated, accepted = answers[-2].sent, 0
    for due in plan.poll_times(answers[-1].sent):
        if (wait := origin[0] + saturated + due - clock()) > 0:
            sleep(wait)
        accepted += send()
        if accepted >= plan.slots:
            break
    return tuple(answers)


def fit(answers: tuple[Timed, ...], rejected: tuple[int, ...], slack: float = CLOCK_SLACK) \
        -> dict[int, tuple[float, float]]:
    """burst -> (lowest, highest) rate per second of every leaky bucket, empty at the first request,
    that answers exactly as seen (`n - rate * tau <= burst` for each accepted request, `>` for each
    rejected one; tau is only known between its sending and the answer). Empty: none does. Without
    a rejection every burst from some value up fits: only those up to the accepted count are listed."""
    if not answers:
        return {}
    first = answers[0]
    rows, seen = [], 0
    for i, a in enumerate(answers):
        tau_min = 0.0 if i == 0 else max(0.0, a.sent - first.received - slack)
        tau_max = 0.0 if i == 0 else a.received - first.sent + slack
        ok = a.status not in rejected
        rows.append((seen, tau_min, tau_max, ok))
        seen += ok
    fits = {}
    for burst in range(seen + 1):
        low, high = 0.0, float("inf")
        for n, tau_min, tau_max, ok in rows:
            need = n - burst
            if ok and need > 0:  # accepted: enough drained by tau_max at the latest
                low = max(low, need / tau_max) if tau_max > 0 else float("inf")
            elif not ok:  # rejected: not enough drained by tau_min at the earliest
                high = min(high, need / tau_min if tau_min > 0 else float("inf")) if need > 0 else -1.0
        if low < high:
            fits[burst] = (low, high)
    return fits


@dataclass(frozen=True)
class ZoneMeasurement:
    plan: ZonePlan
    url: str
    answers: tuple[Timed, ...] = ()
    waited_s: float = 0.0  # waiting for the zone to drain (before each attempt)
    problem: str | None = None  # could not measure (the transport)
    discarded: tuple[tuple[Timed, ...], ...] = ()  # the other attempt's answers (see `measured`)
    elapsed_s: float = 0.0  # from the start of the measurement to this zone's last answer

    @property
    def accepted_first(self) -> int:
        """Accepted before the first rejection."""
        return next((i for i, a in enumerate(self.answers) if a.status in self.plan.rejected), len(self.answers))

    @property
    def saturated(self) -> bool:
        return 0 < self.accepted_first < len(self.answers)

    def fits(self) -> dict[int, tuple[float, float]]:
        if self.problem:
            raise CouldNotAudit(None, f"the zone {self.plan.zone} at {self.url}", self.problem)
        found = fit(self.answers, self.plan.rejected)
        if not found and self.answers:
            raise CouldNotAudit(None, f"the zone {self.plan.zone} at {self.url}",
                                "no leaky bucket that was empty at the first request answers like this (another "
                                "client of this address used the zone meanwhile, or answers "
                                f"{'/'.join(map(str, self.plan.rejected))} came from elsewhere): {self.timeline()}")
        return found

    def _unsaturated(self) -> None:
        """A burst that never met a rejection: the cap reached is a finding (returns); stopped by
        its time bound, it was not tight (could not audit)."""
        self.fits()
        if not self.saturated and len(self.answers) < self.plan.cap:
            raise CouldNotAudit(None, f"the zone {self.plan.zone} at {self.url}",
                                f"the burst was not tight: {len(self.answers)} answers in {BURST_SECONDS} s and no "
                                "rejection (answers too slow to measure the limit)")

    def bursts(self) -> list[int] | str:
        """The bursts that fit; "N or more" when the zone never rejected."""
        self._unsaturated()
        return sorted(self.fits()) if self.saturated else f"{len(self.answers) - 1} or more (no rejection)"

    def rates(self) -> str:
        """The refill rates that fit (over the bursts that fit), in the guide's unit."""
        self._unsaturated()
        if not self.saturated:
            return f"not measurable: no rejection in {len(self.answers)} requests"
        found = self.fits().values()
        low, high = min(lo for lo, _ in found), max(hi for _, hi in found)
        return f"{show_rate(low, self.plan.unit)} to {show_rate(high, self.plan.unit)}"

    def _decide(self, fitting: list[bool], what: str) -> bool:
        """Every fit agrees: its answer; fits that disagree: could not audit."""
        if all(fitting) or not any(fitting):
            return all(fitting)
        raise CouldNotAudit(None, f"the zone {self.plan.zone} at {self.url}",
                            f"the answers fit bursts {sorted(self.fits())} (refill {self.rates()}) and only some of "
                            f"them have {what}: back-to-back requests cannot tell them apart at this refill rate")

    def burst_is(self, burst: int) -> bool:
        """`burst` is the zone's burst: the only one that fits the answers."""
        self._unsaturated()
        return self.saturated and self._decide([b == burst for b in self.fits()], f"burst {burst}")

    def rate_is(self, per_second: float, tolerance: float = 0.03) -> bool:
        """Slots come back at `per_second` (within `tolerance`) whichever burst fits."""
        self._unsaturated()
        return self.saturated and self._decide(
            [lo * (1 - tolerance) <= per_second <= hi * (1 + tolerance) for lo, hi in self.fits().values()],
            f"a refill of {show_rate(per_second, self.plan.unit)}")

    def timeline(self) -> str:
        """'+0.000 200, +0.009 200, ... +12.61 200' (seconds after the first request, status)."""
        return ", ".join(f"+{a.sent:.3f} {a.status}" for a in self.answers)

    def as_guide(self) -> bool:
        """The answers fit the guide's burst and rate (could not audit: they do not)."""
        try:
            return self.burst_is(self.plan.burst) and self.rate_is(self.plan.per_second)
        except CouldNotAudit:
            return False

    def cost(self) -> dict[str, Any]:
        return {"requests": len(self.answers) + sum(len(d) for d in self.discarded),
                "attempts": 1 + len(self.discarded), "seconds": round(self.elapsed_s, 1),
                "of which waiting for the zone to drain": round(self.waited_s, 1)}


@dataclass(frozen=True)
class RateLimits:
    """Each zone's measurement (zone name -> measurement)."""

    zones: dict[str, ZoneMeasurement]

    def zone(self, name: str) -> ZoneMeasurement:
        if name not in self.zones:
            raise CouldNotAudit(None, f"the zone {name}", "the measurement does not know it")
        return self.zones[name]


def limit_req_status(config: NginxConfig, location: str) -> int:
    """The status a location's rejections get: limit_req_status of the location, its server or
    http; NGINX's default 503."""
    for level in (config.location(location), config.server_listening(443), config.http):
        value = level.value("limit_req_status") if level is not None else None
        if value and value.isdigit():
            return int(value)
    return 503


def zone_plans(session) -> list[ZonePlan]:
    """The guide's zones (the catalogue, or the inventory's overrides), each with the rejection
    status the web hosts' NGINX answers in its location."""
    webs = session.inventory.hosts_with_role("web")
    if not webs:
        raise CouldNotAudit(None, "the group web", "no host: the locations' limit_req_status is unknown")
    plans = []
    for zone_req, limit_req_id, path, slots in ZONE_PLANS:
        zone, limit = session.expected(zone_req), session.expected(limit_req_id)
        statuses = {limit_req_status(session.facts.get("nginx", h.name).config, limit["location"]) for h in webs}
        plans.append(ZonePlan(zone["zone"], limit["location"], path or limit["location"], str(zone["rate"]),
                              int(limit["burst"]), slots, tuple(sorted(statuses))))
    return plans


@probe(per_host=False, on_demand=True)
def rate_limits(session) -> RateLimits:
    """Opt-in (`burst`): each zone's accepted burst and refill rate at the public endpoint, measured
    once when a check first needs it, after the audit's own reads. The zones drain side by side
    (the api zone is measured within the login zone's wait). Bounded: ZonePlan.bound() per attempt,
    two attempts at most (`measured`); README, "Reports and gates", has what it costs."""
    public = session.access.public()
    started = time.monotonic()
    return RateLimits({plan.zone: measured(lambda path: public.get(path).status_code, plan, public.url, started)
                       for plan in sorted(zone_plans(session), key=lambda p: p.drain_s)})


ATTEMPTS = 2


def measured(get: Callable[[str], int], plan: ZonePlan, url: str, since: float,
             clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) \
        -> ZoneMeasurement:
    """One zone, its drain counted from `since`. The zone is keyed by client address, which every
    client on the runner's machine shares: requests of another one shortly before the burst leave
    the zone not empty, and the answers then show less headroom than the zone has. So when the
    answers do not fit the guide's zone, it is measured once more after another drain: the verdict
    is the second attempt's when that fits (the first was disturbed), else the first's (a zone
    that drained by the first wait, whatever burst it has; the second is shown)."""
    attempts, waited, begin = [], 0.0, since
    for _ in range(ATTEMPTS):
        pause = max(0.0, since + plan.drain_s - clock())
        sleep(pause)
        waited += pause
        try:
            answers = measure(get, plan, clock, sleep)
        except CouldNotAudit as exc:
            return ZoneMeasurement(plan, url, waited_s=waited, problem=exc.why, elapsed_s=clock() - begin)
        attempts.append(ZoneMeasurement(plan, url, answers))
        if attempts[-1].as_guide():
            break
        since = clock()
    verdict = attempts[-1] if attempts[-1].as_guide() else attempts[0]
    return dataclasses.replace(verdict, waited_s=waited, elapsed_s=clock() - begin,
                               discarded=tuple(a.answers for a in attempts if a is not verdict))
