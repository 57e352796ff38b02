"""`modeldeploy`: the command line of the operator project.

Subcommands print what other tools consume (the CRD, the API reference) or check ModelDeployment
files offline, so a CI pipeline can refuse a bad manifest before it reaches a cluster; `status`
shows one ModelDeployment at a glance (also as the kubectl plugin `kubectl modeldeploy`), and
the control verbs ask the operator to act.
"""

from __future__ import annotations

import argparse
import os
import queue
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import yaml
from pydantic import ValidationError

from modeldeploy import __version__
from modeldeploy.api import API_VERSION, KIND, ModelDeployment
from modeldeploy.api.apidocs import render_docs
from modeldeploy.api.base import rule_field_path
from modeldeploy.api.crd import render_crd
from modeldeploy.checkmodel import add_parser as add_check_model
from modeldeploy.checkmodel import main as check_model


def _field_path(loc: tuple[int | str, ...]) -> str:
    """pydantic's location tuple as the dotted path kubectl would print (spec.rollout.steps[1])."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif not part.startswith(("function-", "constrained-")) and "[" not in part:
            path += f".{part}" if path else part
    return path


# pydantic's generic wording for the two commonest mistakes, said the way a user can act on.
_MESSAGES = {
    "missing": "Required value: this field must be set",
    "extra_forbidden": "unknown field: not part of the ModelDeployment API "
    "(check its spelling and place against docs/api.md)",
}


def validation_errors(doc: dict[str, Any]) -> list[str]:
    """Every problem in one ModelDeployment document, each naming its field."""
    try:
        ModelDeployment.model_validate(doc)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            message = _MESSAGES.get(err["type"], err["msg"].removeprefix("Value error, "))
            path = _field_path(err["loc"]) + (rule_field_path(message) or "")
            problems.append(f"{path or '<document>'}: {message}")
        return problems
    return []


def _validate(files: Sequence[str]) -> int:
    failed = 0
    for name in files:
        text = sys.stdin.read() if name == "-" else Path(name).read_text()
        for doc in yaml.safe_load_all(text):
            if not isinstance(doc, dict) or doc.get("kind") != KIND:
                continue
            name = doc.get("metadata", {}).get("name", "?")
            ident = f"{KIND.lower()}.{API_VERSION.split('/')[0]}/{name}"
            errors = validation_errors(doc)
            if errors:
                failed += 1
                print(f"{name}: {ident} is invalid:", file=sys.stderr)
                for line in errors:
                    print(f"  * {line}", file=sys.stderr)
            else:
                print(f"{name}: {ident} valid")
    return 1 if failed else 0


CONTROL_VERBS = {
    "promote": "skip the remaining steps and promote the rollout in progress",
    "abort": "roll the rollout in progress back now (the revision is not retried by itself)",
    "retry": "roll out again a revision that was rolled back",
    "undo": "serve the previous revision again (one-step rollback)",
    "pause": "hold the rollout where it is (sets spec.paused)",
    "resume": "let a paused rollout go on (clears spec.paused)",
}


def _control(
    verb: str, name: str, namespace: str | None, kubeconfig: str | None, wait: float = 0.0
) -> int:
    """Ask the operator to act: pause/resume edit the spec, the others set the action
    annotation (with a timestamp, so the same command twice acts twice).

    With `wait`, an action waits that long for the operator to record it and prints the
    warnings it gave (PromoteImpossible, RetryImpossible...): exit 1 when it refused."""
    from modeldeploy.core.naming import ACTION_ANNOTATION
    from modeldeploy.runtime.errors import KubeError
    from modeldeploy.runtime.kube import Kube, current_namespace, load_config

    kube = Kube(load_config(kubeconfig))
    namespace = namespace or current_namespace()
    asked = datetime.now(UTC)
    action = f"{verb}@{asked.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}"
    if verb in ("pause", "resume"):
        patch: dict[str, Any] = {"spec": {"paused": verb == "pause"}}
    else:
        patch = {"metadata": {"annotations": {ACTION_ANNOTATION: action}}}
    try:
        kube.patch_modeldeployment(namespace, name, patch)
    except KubeError as exc:
        print(f"Error from server: {exc}", file=sys.stderr)
        return 1
    done = {"pause": "paused", "resume": "resumed"}.get(verb, f"{verb} requested")
    print(f"modeldeployment.modeldeploy.io/{name} {done}")
    if wait <= 0 or verb in ("pause", "resume"):
        return 0
    try:
        return _await_action(kube, namespace, name, action, asked, wait)
    except KubeError as exc:
        print(f"Error from server: {exc}", file=sys.stderr)
        return 1


_REFUSALS = ("Impossible", "InvalidAction")


def _await_action(
    kube: Any, namespace: str, name: str, action: str, asked: datetime, wait: float
) -> int:
    """Wait for status.handledAction to show `action`, then report the operator's refusals."""
    give_up = time.monotonic() + wait
    while kube.handled_action(namespace, name) != action:
        if time.monotonic() >= give_up:
            print(f"the operator has not acted on {action} within {wait:g}s (is it running?)",
                  file=sys.stderr)  # fmt: skip
            return 1
        time.sleep(0.5)
    time.sleep(1.0)  # the Event is posted just after the status write
    refused = [(r, m) for r, m in kube.warnings(namespace, name, asked) if r.endswith(_REFUSALS)]
    for reason, message in refused:
        print(f"warning: {reason}: {message}", file=sys.stderr)
    if not refused:
        print(f"modeldeployment.modeldeploy.io/{name} {action.partition('@')[0]} handled")
    return 1 if refused else 0


def use_color(stream: TextIO, environ: dict[str, str] | os._Environ[str]) -> bool:
    """Colour on a terminal only, and never with NO_COLOR set (no-color.org) or TERM=dumb."""
    if environ.get("NO_COLOR") or environ.get("TERM") == "dumb":
        return False
    return stream.isatty()


CLEAR: Final = "\x1b[H\x1b[2J"
"""Cursor home and clear screen: a terminal shows each --watch frame in place."""


def _status(name: str, namespace: str | None, kubeconfig: str | None, follow: bool) -> int:
    """Print the status view of one ModelDeployment; with `follow`, again on every change of
    the object or its Events, until Ctrl-C (exit 0)."""
    from kubernetes.config import ConfigException
    from urllib3.exceptions import HTTPError

    from modeldeploy.runtime import readers
    from modeldeploy.runtime.errors import KubeError
    from modeldeploy.runtime.kube import Kube, current_namespace, load_config
    from modeldeploy.statusview import render

    try:
        kube = Kube(load_config(kubeconfig))
    except (ConfigException, OSError) as exc:
        print(f"error: no cluster to ask: {exc} (set KUBECONFIG or --kubeconfig)",
              file=sys.stderr)  # fmt: skip
        return 1
    namespace = namespace or current_namespace()
    out = sys.stdout
    color = use_color(out, os.environ)
    redraw = color or out.isatty()

    def show(obj: dict[str, Any], events: list[dict[str, Any]], first: bool) -> None:
        frame = render(obj, events, datetime.now(UTC), color=color)
        out.write((CLEAR if redraw else ("" if first else "\n")) + frame)
        out.flush()

    try:
        obj = readers.read_modeldeployment(kube, namespace, name)
        events, events_version = readers.list_events(kube, namespace, name)
        show(obj, events, first=True)
        if not follow:
            return 0
        version = str(obj["metadata"]["resourceVersion"])
        changes = readers.follow(kube, namespace, name, version, events_version)
        by_uid = {str(e["metadata"]["uid"]): e for e in events}
        while True:
            try:
                batch = [changes.get(timeout=1.0)]
            except queue.Empty:
                continue
            while not changes.empty():  # a burst of changes is one frame
                batch.append(changes.get_nowait())
            for change in batch:
                if isinstance(change, BaseException):
                    raise change
                what, kind, raw = change
                if what == "object" and kind == "DELETED":
                    print(f"{KIND.lower()} {namespace}/{name} deleted")
                    return 0
                if what == "object":
                    obj = raw
                elif kind == "DELETED":
                    by_uid.pop(str(raw["metadata"]["uid"]), None)
                else:
                    by_uid[str(raw["metadata"]["uid"])] = raw
            show(obj, list(by_uid.values()), first=False)
    except KeyboardInterrupt:
        return 0
    except readers.NotFoundError as exc:
        print(f"Error from server (NotFound): {exc}", file=sys.stderr)
        return 1
    except KubeError as exc:
        print(f"Error from server: {exc}", file=sys.stderr)
        return 1
    except (HTTPError, OSError) as exc:
        print(f"error: cannot reach the API server: {exc}", file=sys.stderr)
        return 1


def build_parser(prog: str = "modeldeploy") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description="Serve ONNX models on Kubernetes and roll them out safely."
    )
    parser.add_argument("--version", action="version", version=f"modeldeploy {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("crd", help="print the ModelDeployment CustomResourceDefinition (YAML)")
    sub.add_parser("docs", help="print the API reference (Markdown)")
    check = sub.add_parser(
        "validate", help="check ModelDeployment files offline with the API server's rules"
    )
    check.add_argument(
        "-f",
        "--filename",
        dest="files",
        action="append",
        required=True,
        help="a YAML file (repeatable; - reads standard input)",
    )
    view = sub.add_parser(
        "status",
        help="show a ModelDeployment: phase, step, revisions (model, digest, pods, traffic), "
        "checks, hooks and Events",
    )
    view.add_argument("name", help="the ModelDeployment")
    view.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
    view.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
    view.add_argument(
        "-w", "--watch", action="store_true", help="show it again on every change (Ctrl-C ends)"
    )
    for verb, text in CONTROL_VERBS.items():
        control = sub.add_parser(verb, help=text)
        control.add_argument("name", help="the ModelDeployment")
        control.add_argument("-n", "--namespace", help="default: the kubeconfig's namespace")
        control.add_argument("--kubeconfig", help="default: $KUBECONFIG or ~/.kube/config")
        if verb not in ("pause", "resume"):
            control.add_argument(
                "--wait",
                type=float,
                default=0.0,
                metavar="SECONDS",
                help="wait this long for the operator to act, and say if it refused "
                "(exit 1); default: do not wait",
            )
    add_check_model(sub)
    run = sub.add_parser("run", help="run the operator (watches ModelDeployments)")
    scope = run.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        dest="namespaces",
        action="append",
        default=[],
        help="watch this namespace (repeatable)",
    )
    scope.add_argument(
        "-A",
        "--all-namespaces",
        action="store_true",
        help="watch the whole cluster (the default without --namespace)",
    )
    run.add_argument(
        "--liveness-port",
        type=int,
        default=8080,
        help="serve /healthz here for the liveness probe (0: off)",
    )
    run.add_argument(
        "--metrics-port",
        type=int,
        default=9090,
        help="serve the operator's Prometheus metrics here (0: off)",
    )
    run.add_argument("--log-format", choices=["plain", "json"], default="plain")
    run.add_argument(
        "--peering",
        metavar="NAME",
        help="no longer supported: replicas elect a leader through a Lease "
        "(MODELDEPLOY_LEADER_ELECTION, MODELDEPLOY_LEASE_NAME); given, it stops with that message",
    )
    run.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None, prog: str = "modeldeploy") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.command == "crd":
        sys.stdout.write(render_crd())
        return 0
    if args.command == "docs":
        sys.stdout.write(render_docs())
        return 0
    if args.command == "status":
        return _status(args.name, args.namespace, args.kubeconfig, args.watch)
    if args.command in CONTROL_VERBS:
        wait = getattr(args, "wait", 0.0)
        return _control(args.command, args.name, args.namespace, args.kubeconfig, wait)
    if args.command == "check-model":
        return check_model(args)
    if args.command == "run":
        # Imported here: the operator's dependencies (kopf, kubernetes) are an optional extra.
        from modeldeploy.runtime.main import run_operator

        run_operator(
            namespaces=args.namespaces,
            liveness_port=args.liveness_port,
            metrics_port=args.metrics_port,
            json_logs=args.log_format == "json",
            peering=args.peering,
            verbose=args.verbose,
        )
        return 0
    return _validate(args.files)


def kubectl_plugin() -> int:
    """`kubectl modeldeploy ...`: kubectl runs the executable `kubectl-modeldeploy` found on
    PATH with the words after `modeldeploy`; the same commands, named as the user typed them."""
    return main(prog="kubectl modeldeploy")


if __name__ == "__main__":
    sys.exit(main())
