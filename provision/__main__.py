"""Command line: python -m provision up|down|status|drift|heal."""

from __future__ import annotations

import argparse
import os
import sys

from . import flavour
from .ui import ProvisionError


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m provision",
                                description="Pynomaly reference deployment (docs/contracts.md)")
    p.add_argument("--flavour", choices=flavour.FLAVOURS, default=flavour.DEFAULT,
                   help="which deployment: reference (default) or fleet (systemd hosts, sudo-only "
                        "audit account, an iptables host, Compose-run app host)")
    sub = p.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="build images, start and configure every host (idempotent)")
    up.add_argument("--hardened", action="store_true",
                    help="then harden it beyond the guide, so that every advisory (ADV-*) passes; kept by later ups")
    sub.add_parser("harden", help="harden the running reference deployment beyond the guide (advisories green)")
    sub.add_parser("unharden", help="undo `harden`: the deployment exactly as the guide builds it")
    down = sub.add_parser("down", help="remove containers, network and .state/")
    down.add_argument("--purge", action="store_true", help="also remove the images")
    sub.add_parser("status", help="each host and service; exit 1 if something is down")
    drift = sub.add_parser("drift", help="break one requirement on the running deployment")
    drift.add_argument("name", nargs="?", help="drift name (see --list)")
    drift.add_argument("--list", action="store_true", help="print NAME  REQ-IDS  description")
    sub.add_parser("heal", help="revert every applied drift")
    scale = sub.add_parser("scale", help="run N app instances (upstream, Prometheus targets follow)")
    scale.add_argument("count", type=int)
    loadgen = sub.add_parser("loadgen", help="Locust worker hosts for the load checks (provision/loadgen.py)")
    loadgen.add_argument("action", choices=["up", "down", "status"])
    loadgen.add_argument("count", type=int, nargs="?", default=1, help="up: how many (lg1..lgN)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    flavour.select(args.flavour)
    if args.flavour == "fleet":
        return _fleet(args)
    from . import deploy, drifts, hardened

    try:
        if args.command == "up":
            if os.geteuid() != 0:
                raise ProvisionError("`up` must run as root (it may install and start Docker)")
            with drifts.lock():  # not while a drift experiment runs
                deploy.up()
                if args.hardened or hardened.recorded():
                    hardened.apply(True)
        elif args.command == "down":
            with drifts.lock():
                deploy.down(purge=args.purge)
        elif args.command == "status":
            return deploy.status()
        elif args.command == "drift":
            if args.list or not args.name:
                drifts.print_list()
                return 0 if args.list else 2
            drifts.apply(args.name)
        elif args.command == "heal":
            drifts.heal()
        elif args.command in ("harden", "unharden"):
            with drifts.lock():
                hardened.apply(args.command == "harden")
        elif args.command == "scale":
            from . import scale

            with drifts.lock():
                scale.scale(args.count)
        elif args.command == "loadgen":
            from . import loadgen

            if args.action == "status":
                return loadgen.status()
            loadgen.up(args.count) if args.action == "up" else loadgen.down()
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _fleet(args) -> int:
    """The fleet flavour: provision/fleet/ (`scale` is the reference's only)."""
    from . import drifts
    from .fleet import deploy

    try:
        if args.command == "up":
            if os.geteuid() != 0:
                raise ProvisionError("`up` must run as root (it may install and start Docker)")
            with drifts.lock():
                deploy.up()
        elif args.command == "down":
            with drifts.lock():
                deploy.down(purge=args.purge)
        elif args.command == "status":
            return deploy.status()
        elif args.command == "drift":
            if args.list or not args.name:
                drifts.print_list()
                return 0 if args.list else 2
            drifts.apply(args.name)
        elif args.command == "heal":
            drifts.heal()
        elif args.command == "scale":
            raise ProvisionError("`scale` is not available on the fleet flavour (its replicas are "
                                 "docker-compose's deploy.replicas on app1)")
        elif args.command == "loadgen":
            raise ProvisionError("`loadgen` adds workers to the reference deployment's network only")
    except ProvisionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
