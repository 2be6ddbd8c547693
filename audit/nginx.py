"""NGINX's effective configuration: the `nginx -T` dump, parsed with crossplane, includes resolved.

`nginx -T` prints every file it loaded after a `# configuration file PATH:` line. The dump is split
on those markers, each file is parsed with crossplane on its own (as `single`), and every
`include` is replaced by the directives of the dumped files it matches, so the tree is what NGINX
runs. A dump of the files read with `cat` (when `nginx -t` fails) has the same markers.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import tempfile
from dataclasses import dataclass, field

import crossplane

MARKER = re.compile(r"^# configuration file (.+?):\s*$", re.M)
NOISE = re.compile(r"^nginx: (?:the )?configuration file \S+ (?:syntax is ok|test is successful)\n?", re.M)
MAIN = "/etc/nginx/nginx.conf"

# Remote commands: the dump, or the files on disk (one level of includes) when the test fails.
DUMP_COMMAND = (
    "nginx -T 2>/dev/null || (cd /etc/nginx && for f in /etc/nginx/nginx.conf "
    "$(sed -n 's/^[[:space:]]*include[[:space:]]\\+\\([^;]*\\);.*/\\1/p' /etc/nginx/nginx.conf); "
    "do for g in $f; do [ -f \"$g\" ] && { echo \"# configuration file $(readlink -f $g):\"; cat \"$g\"; echo; }; "
    "done; done)"
)
TEST_COMMAND = "nginx -t 2>&1; echo \"exit=$?\""
# What the NGINX and TLS checks read from a web host, in one round trip (shared group).
COMMANDS = {
    "test": TEST_COMMAND,
    "dump": DUMP_COMMAND,
    "workers": "ps -o user=,args= -C nginx",
    "log_fds": "for p in $(pgrep -x nginx); do ls -l /proc/$p/fd 2>/dev/null; done"
               " | grep -o '/var/log/nginx/[^ ]*' | sort -u",
    "crontab": "crontab -l -u root 2>/dev/null",
    "certbot_nginx": "dpkg-query -W -f='${Status} ${Version}\\n' python3-certbot-nginx 2>/dev/null"
                     " || rpm -q python3-certbot-nginx 2>/dev/null",
}


def read(server) -> dict[str, str]:
    """The web host's NGINX facts (one round trip per host and run, shared by both modules)."""
    return server.collect("nginx", COMMANDS)


@functools.lru_cache(maxsize=8)
def _parsed(text: str) -> NginxConfig:
    return parse_dump(text)


def effective_config(server) -> NginxConfig:
    return _parsed(read(server)["dump"])


def split_dump(text: str) -> dict[str, str]:
    """path -> file text, in dump order."""
    text = NOISE.sub("", text)  # nginx -t's own lines, when stderr was captured too
    parts = MARKER.split(text)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts) - 1, 2)}


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None
    file: str = ""
    line: int = 0

    def text(self) -> str:
        return " ".join([self.name, *self.args])

    def find(self, name: str, *args: str) -> list[Directive]:
        """Direct children named `name` (whose first args are `args`)."""
        return [d for d in (self.block or []) if d.name == name and d.args[: len(args)] == list(args)]

    def first(self, name: str, *args: str) -> Directive | None:
        found = self.find(name, *args)
        return found[0] if found else None

    def value(self, name: str) -> str | None:
        d = self.first(name)
        return " ".join(d.args) if d else None

    def walk(self):
        for d in self.block or []:
            yield d
            yield from d.walk()


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

    def servers(self) -> list[Directive]:
        return self.http.find("server")

    def server_listening(self, port: int) -> Directive | None:
        """The first server block with a `listen` on `port` (any address)."""
        for srv in self.servers():
            for listen in srv.find("listen"):
                if re.fullmatch(rf"(?:[\w.\[\]:*-]+:)?{port}", listen.args[0]):
                    return srv
        return None

    def location(self, path: str, port: int = 443) -> Directive | None:
        srv = self.server_listening(port)
        if srv is None:
            return None
        for loc in srv.find("location"):
            if loc.args and loc.args[-1] == path:
                return loc
        return None

    def upstream(self, name: str) -> Directive | None:
        return self.http.first("upstream", name)


def _convert(items: list[dict], file: str, files: dict[str, dict], seen: tuple[str, ...]) -> list[Directive]:
    out: list[Directive] = []
    for item in items:
        if item["directive"] == "include" and item["args"]:
            out.append(Directive("include", list(item["args"]), None, file, item.get("line", 0)))
            pattern = item["args"][0]
            if not pattern.startswith("/"):
                pattern = os.path.join(os.path.dirname(MAIN), pattern)
            for path in sorted(p for p in files if fnmatch.fnmatch(p, pattern)):
                if path not in seen:
                    out.extend(_convert(files[path], path, files, (*seen, path)))
            continue
        block = _convert(item["block"], file, files, seen) if "block" in item else None
        out.append(Directive(item["directive"], list(item["args"]), block, file, item.get("line", 0)))
    return out


def parse_dump(text: str, main: str = MAIN) -> NginxConfig:
    """The effective configuration from an `nginx -T` dump (includes resolved)."""
    files = split_dump(text)
    config = NginxConfig(files)
    parsed: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="nginx-dump-") as tmp:
        for i, (path, body) in enumerate(files.items()):
            local = os.path.join(tmp, f"{i}.conf")
            with open(local, "w") as fh:
                fh.write(body)
            payload = crossplane.parse(local, single=True, comments=False, check_ctx=False, check_args=False)
            cfg = payload["config"][0]
            parsed[path] = cfg["parsed"]
            config.errors += [f"{path}: {e['error']}" for e in cfg["errors"]]
    if main not in parsed:
        main = next(iter(parsed), main)
    config.root = Directive("main", [], _convert(parsed.get(main, []), main, parsed, (main,)))
    return config


def parse_test(text: str) -> tuple[bool, str]:
    """(`nginx -t` succeeded, its output) from TEST_COMMAND's output."""
    match = re.search(r"exit=(\d+)\s*$", text)
    ok = bool(match) and match.group(1) == "0" and "test is successful" in text
    return ok, re.sub(r"\s*exit=\d+\s*$", "", text).strip()


def header_values(location: Directive | None, server: Directive | None, http: Directive | None) -> dict[str, str]:
    """The add_header set that applies in `location`: NGINX inherits add_header from the enclosing
    level only when the level itself has none (the "add_header inheritance trap")."""
    for level in (location, server, http):
        if level is not None and level.find("add_header"):
            return {d.args[0].lower(): " ".join(d.args[1:]) for d in level.find("add_header")}
    return {}
