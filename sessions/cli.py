"""`posegen`: generate in one process, or manage background sessions.

Engine commands (generate, ckpt, sample-inputs, prompt, check, prepare) plus the
session commands:
init, session new|delete, project delete, start, status, logs, pause, resume,
stop [--now], retry, merge, cache, wait, open. The database and workspaces live in
$POSEGEN_HOME (default: the platform's user data dir).
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time
from pathlib import Path

from engine.cli import USER_ERRORS, Parser, add_engine_commands, run_command, version_text
from engine.settings import DEFAULT_FRAMING, FRAMINGS
from sessions.store import StoreError


def _store():
    from sessions.paths import db_path
    from sessions.store import Store

    return Store(db_path())


def row_id(text: str) -> int:
    """A session id as argparse takes it: a positive integer SQLite can hold."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a session id (a number; "
                                          "`posegen status` lists them)") from None
    if not 1 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"{text}: no such session id (ids are 1, 2, ...; "
                                          "`posegen status` lists them)")
    return value


def chunk_index(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a chunk index (0, 1, ...)") from None
    if not 0 <= value < 2**31:
        raise argparse.ArgumentTypeError(f"{text}: no such chunk (indices are 0, 1, ...; "
                                          "`posegen status SESSION` lists them)")
    return value


def build_parser() -> argparse.ArgumentParser:
    from engine.cli_options import add_generation_options

    p = Parser(prog="posegen", description=__doc__)
    p.add_argument("--version", action="version", version=version_text())
    sub = p.add_subparsers(dest="command", required=True)
    add_engine_commands(sub)

    i = sub.add_parser("init", help="create a project from a reference image and clips")
    i.add_argument("project")
    i.add_argument("--image", type=Path, required=True)
    i.add_argument("--pose", type=Path, required=True)
    i.add_argument("--hand", type=Path, required=True)
    i.add_argument("--driving", type=Path, help="the driving video the clips came from")
    src = i.add_mutually_exclusive_group(required=True)
    src.add_argument("--prompt")
    src.add_argument("--prompt-file", type=Path)
    i.add_argument("--framing", choices=sorted(FRAMINGS),
                   help="framing of the reference; picks the default -s/-b of its sessions")
    i.set_defaults(func=cmd_init)

    s = sub.add_parser("session", help="sessions of a project")
    ssub = s.add_subparsers(dest="session_command", required=True)
    n = ssub.add_parser("new", help="create a session (a generation run) of a project")
    n.add_argument("project", nargs="?", help="name or id (not with --from-preview)")
    n.add_argument("--name")
    n.add_argument("--ckpt", help="checkpoint dir (default: $POSEGEN_CKPT_PATH)")
    n.add_argument("--gpus", help="GPU indices for its workers, e.g. 0,1 (default: --device)")
    n.add_argument("--json", action="store_true")
    n.add_argument("--on-done", metavar="CMD",
                   help="shell command run once when the session ends done or failed, with "
                        "$POSEGEN_SESSION_ID, $POSEGEN_SESSION_STATE, $POSEGEN_PROJECT, "
                        "$POSEGEN_VIDEO, $POSEGEN_WORKSPACE (output: WORKSPACE/logs/on_done.log)")
    pv = n.add_argument_group(
        "preview", "look at the whole video cheaply before the long run, then choose the "
        "anchor from it (docs/sessions.md#preview-sessions)")
    pv.add_argument("--preview", action="store_true",
                    help="a preview session of these settings: the same chunk plan at half "
                         "the size and 10 steps")
    pv.add_argument("--preview-size", type=size_arg, metavar="HxW",
                    help="the preview's size instead of half (multiples of 16)")
    pv.add_argument("--preview-steps", type=int, metavar="N",
                    help="the preview's sampling steps instead of 10")
    pv.add_argument("--from-preview", type=row_id, metavar="SESSION",
                    help="the full session of preview SESSION (its settings and plan), "
                         "with the anchor chunk chosen by --anchor K")
    add_generation_options(n, with_inputs=False)
    n.set_defaults(func=cmd_session_new, share_steps=None, share_blocks=None, anchor=None)
    d = ssub.add_parser("delete", help="delete a session's rows (its folder is kept)")
    d.add_argument("session", type=row_id)
    d.set_defaults(func=cmd_delete, kind="session")
    a = ssub.add_parser("archive", help="hide a session from lists (nothing is deleted)")
    a.add_argument("session", type=row_id)
    a.add_argument("--restore", action="store_true", help="show it again")
    a.set_defaults(func=cmd_archive, kind="session")

    pr = sub.add_parser("project", help="projects")
    prsub = pr.add_subparsers(dest="project_command", required=True)
    pd = prsub.add_parser("delete", help="delete a project and its sessions' rows (folders "
                                         "are kept)")
    pd.add_argument("project", help="name or id")
    pd.set_defaults(func=cmd_delete, kind="project")
    pa = prsub.add_parser("archive", help="hide a project and its sessions from lists "
                                          "(nothing is deleted)")
    pa.add_argument("project", help="name or id")
    pa.add_argument("--restore", action="store_true", help="show it again")
    pa.set_defaults(func=cmd_archive, kind="project")

    st = sub.add_parser("start", help="start background workers for a session")
    _worker_options(st)
    st.set_defaults(func=cmd_start)
    r = sub.add_parser("resume", help="continue a paused, stopped or crashed session")
    _worker_options(r)
    r.set_defaults(func=cmd_resume)
    for name, helptext in (("pause", "pause at the next step boundary (frees the GPU)"),
                           ("stop", "stop at the next step boundary")):
        c = sub.add_parser(name, help=helptext)
        c.add_argument("session", type=row_id)
        if name == "stop":
            c.add_argument("--now", action="store_true",
                           help="kill the workers at once (as kill -9: finished chunks and "
                                "saved steps are kept; `posegen resume` continues)")
        c.set_defaults(func=cmd_pause_stop, kind=name)

    stt = sub.add_parser("status", help="sessions overview, or one session")
    stt.add_argument("session", type=row_id, nargs="?")
    stt.add_argument("--json", action="store_true")
    stt.set_defaults(func=cmd_status)
    lg = sub.add_parser("logs", help="a session's events and worker log")
    lg.add_argument("session", type=row_id)
    lg.add_argument("-f", "--follow", action="store_true")
    lg.add_argument("-n", "--lines", type=int, default=40)
    lg.set_defaults(func=cmd_logs)
    rt = sub.add_parser("retry", help="generate one chunk again (and what depends on it)")
    rt.add_argument("session", type=row_id)
    rt.add_argument("chunk", type=chunk_index)
    rt.add_argument("--seed", type=int)
    rt.set_defaults(func=cmd_retry)
    m = sub.add_parser("merge", help="merge the finished chunks into video.mp4")
    m.add_argument("session", type=row_id)
    m.set_defaults(func=cmd_merge)
    ca = sub.add_parser("cache", help="disk use of a session; --clear frees what is not needed")
    ca.add_argument("session", type=row_id)
    ca.add_argument("--clear", action="store_true")
    ca.set_defaults(func=cmd_cache)
    w = sub.add_parser("wait", help="wait until a session is done (exit 0) or fails")
    w.add_argument("session", type=row_id)
    w.add_argument("--timeout", type=float)
    w.set_defaults(func=cmd_wait)
    op = sub.add_parser("open", help="print the merged video's path (or a chunk's) and open "
                                     "it on a desktop")
    op.add_argument("session", type=row_id)
    op.add_argument("--chunk", type=chunk_index, help="this chunk's video instead")
    op.set_defaults(func=cmd_open)
    return p


def _worker_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=row_id)
    p.add_argument("--gpus", help="one worker per GPU, e.g. 0,1,2,3")
    p.add_argument("--workers", type=int, help="number of CPU workers (CPU sessions)")
    p.add_argument("--executor", choices=("local", "ray"),
                   help="local: worker processes on this host (start's default); ray: "
                        "actors on a Ray cluster of several hosts (resume's default for a "
                        "session started with it); see docs/cluster.md")
    g = p.add_argument_group("Ray executor (pip install 'posegen-tui[ray]')")
    g.add_argument("--address", help="Ray cluster: auto (default: the one this host "
                   "joined with `ray start`), HEAD:6379, or local (a private one-node Ray)")
    g.add_argument("--ray-actors", type=int, metavar="N",
                   help="actors to start (default: one per GPU in the cluster)")
    g.add_argument("--ray-resource", metavar="NAME",
                   help="Ray resource each actor takes (default GPU)")
    g.add_argument("--ray-amount", type=float, metavar="X",
                   help="how much of that resource per actor (default 1)")
    g.add_argument("--ray-device", metavar="DEV", help="torch device inside each actor "
                   "(default cuda:0: Ray gives each actor its own GPU; cpu for CPU sessions)")
    g.add_argument("--ray-threads", type=int, metavar="N",
                   help="torch CPU threads per actor (default: Ray's)")
    g.add_argument("--no-wait", action="store_true",
                   help="return at once instead of waiting for the actors to be ready")


# -- projects and sessions -----------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from engine.prompt import read_prompt_file
    from sessions.commands import NewProject, create_project

    prompt = args.prompt if args.prompt is not None else read_prompt_file(args.prompt_file)
    pid = create_project(_store(), NewProject(
        args.project, image=args.image, pose=args.pose, hand=args.hand, prompt=prompt,
        framing=args.framing, driving=args.driving))
    print(f"project {args.project} (id {pid}) created; next: posegen session new {args.project}")
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    from sessions.commands import delete_project, delete_session

    store = _store()
    if args.kind == "project":
        print(delete_project(store, args.project))
    else:
        print(delete_session(store, args.session))
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    from sessions.commands import archive

    store = _store()
    ident = store.get_project(args.project)["id"] if args.kind == "project" else args.session
    print(archive(store, args.kind, ident, archived=not args.restore))
    return 0


def size_arg(text: str) -> tuple[int, int]:
    """HxW, e.g. 640x352 (height first, as --height/--width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give the size as HxW, e.g. 640x352 "
                                          "(height x width)") from None
    return h, w


def _given_settings(args: argparse.Namespace) -> list[str]:
    """The generation options given other than --anchor and the hardware ones."""
    from engine.cli_options import add_generation_options

    ref = argparse.ArgumentParser()
    add_generation_options(ref, with_inputs=False)
    defaults = vars(ref.parse_args([]))
    hardware = {"device", "budget", "anchor"}
    flags = {a.dest: a.option_strings[-1] for a in ref._actions if a.option_strings}
    return [flags[k] for k, v in defaults.items()
            if k not in hardware and getattr(args, k, v) not in (v, None)]


def cmd_session_new(args: argparse.Namespace) -> int:
    from engine.cli_options import DEFAULTS, settings_from_args
    from sessions.commands import NewSession, create_session, from_preview, preview_of

    store = _store()
    if args.from_preview is not None:
        if args.project is not None or args.preview:
            raise StoreError("--from-preview takes the project and settings from the preview; "
                             "drop the project name and --preview")
        given = _given_settings(args)
        if given:
            raise StoreError(f"{', '.join(given)}: with --from-preview the settings are the "
                             "preview's full-run ones (its plan must not change); make a new "
                             "preview with these settings instead")
        new = from_preview(store, args.from_preview, anchor=args.anchor, name=args.name,
                           ckpt=args.ckpt, gpus=args.gpus,
                           device=None if args.device == "cpu" else args.device,
                           budget=None if args.budget == "none" else args.budget,
                           on_done=args.on_done)
    else:
        if args.project is None:
            raise StoreError("which project? `posegen session new PROJECT` (`posegen status` "
                             "lists projects), or --from-preview SESSION")
        if (args.preview_size or args.preview_steps) and not args.preview:
            raise StoreError("--preview-size/--preview-steps set a preview's size and steps; "
                             "add --preview")
        project = store.get_project(args.project)
        steps, blocks = FRAMINGS[project.get("framing") or DEFAULT_FRAMING]
        args.share_steps = args.share_steps or steps
        args.share_blocks = args.share_blocks or blocks
        args.anchor = DEFAULTS.anchor if args.anchor is None else args.anchor
        new = NewSession(project["id"], settings_from_args(args), ckpt=args.ckpt,
                         device=args.device, budget=args.budget, gpus=args.gpus or "",
                         name=args.name, on_done=args.on_done)
        if args.preview:
            new = preview_of(new, args.preview_size, args.preview_steps)
    created = create_session(store, new)
    if created.moved_aside is not None:
        print(f"note: the new session's folder held files of an earlier, deleted session; "
              f"moved them to {created.moved_aside}", file=sys.stderr)
    if args.json:
        print(json.dumps({"id": created.id, "chunks": created.chunks, "kind": new.kind}))
    else:
        print(created.message())
        if new.kind == "preview":
            print(preview_cost_line(new, created.id))
    return 0


def preview_cost_line(new, session_id: int) -> str:
    """What a preview is and costs, said when it is made."""
    from engine.preview import MEASURED, token_ratio

    p, f = new.settings, new.full
    line = (f"preview: {p.height}x{p.width} ({token_ratio(p, f):.2f} of the full run's "
            f"tokens), {p.steps} steps of {f.steps}, -s {p.share_steps[0]} "
            f"{p.share_steps[1]}")
    if MEASURED:
        line += f"; {MEASURED}"
    return (line + ". When it is done, choose the anchor in posegen-tui, or: posegen session "
            f"new --from-preview {session_id} --anchor K")


# -- process control -------------------------------------------------------------
def _devices(store, args: argparse.Namespace) -> list[str]:
    from sessions.control import worker_devices

    return worker_devices(store.get_session(args.session), args.gpus, args.workers)


RAY_ARGS = {"address": "address", "ray_actors": "actors", "ray_resource": "resource",
            "ray_amount": "amount", "ray_device": "device", "ray_threads": "threads"}


def _executor(args: argparse.Namespace) -> tuple[str | None, dict]:
    """The executor asked for (None: the default) and the Ray options given."""
    given = {key: getattr(args, name) for name, key in RAY_ARGS.items()
             if getattr(args, name) is not None}
    executor = args.executor
    if given and executor is None:
        executor = "ray"
    if executor == "local" and given:
        raise StoreError(f"--{next(iter(given)).replace('_', '-')} is an option of the Ray "
                         "executor; drop it, or use --executor ray")
    if executor == "ray" and (args.gpus or args.workers):
        raise StoreError("--gpus/--workers choose local workers; with --executor ray the "
                         "cluster's GPUs are used (--ray-actors N to use fewer)")
    if executor is None and (args.gpus or args.workers):
        executor = "local"
    return executor, given


def _ray_started(store, args: argparse.Namespace, pid: int, after: int, verb: str) -> int:
    from sessions.control import wait_ray_ready

    sid = args.session
    if args.no_wait:
        print(f"session {sid}: {verb} the Ray driver (pid {pid}); watch with "
              f"`posegen status {sid}` or `posegen logs {sid} -f`")
        return 0
    state, message = wait_ray_ready(store, sid, pid, after)
    if state == "failed":
        raise StoreError(message)
    if state == "timeout":
        print(f"session {sid}: the Ray driver (pid {pid}) is still starting its actors; "
              f"see `posegen logs {sid} -f`")
        return 0
    print(f"session {sid}: {verb} on Ray, driver pid {pid}: {message}; watch with "
          f"`posegen status {sid}` or posegen-tui")
    return 0


def _last_event_id(store, session_id: int) -> int:
    events = store.events(session_id, limit=1000000)
    return events[-1]["id"] if events else 0


def cmd_start(args: argparse.Namespace) -> int:
    from sessions.control import ray_options, start_ray_driver, start_workers

    store = _store()
    executor, given = _executor(args)
    if executor == "ray":
        after = _last_event_id(store, args.session)
        options = ray_options(store.get_session(args.session), given)
        pid = start_ray_driver(store, args.session, options)
        return _ray_started(store, args, pid, after, "started")
    pids = start_workers(store, args.session, _devices(store, args))
    print(f"session {args.session}: started worker pid {', '.join(map(str, pids))}; "
          f"watch with `posegen status {args.session}` or posegen-tui")
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from sessions.control import executor_of, resume

    store = _store()
    executor, given = _executor(args)
    ray = executor == "ray" or (
        executor is None and (executor_of(store, args.session) or {}).get("kind") == "ray")
    after = _last_event_id(store, args.session)
    devices = [] if ray else _devices(store, args)
    pids = resume(store, args.session, devices, executor=executor, ray=given)
    if ray:
        return _ray_started(store, args, pids[0], after, "resumed")
    print(f"session {args.session}: resumed with worker pid {', '.join(map(str, pids))}")
    return 0


def cmd_pause_stop(args: argparse.Namespace) -> int:
    from sessions.control import request_stop, stop_now, stopped_now_message

    if getattr(args, "now", False):
        print(stopped_now_message(args.session, stop_now(_store(), args.session)))
        return 0
    print(request_stop(_store(), args.session, args.kind))
    return 0


def cmd_wait(args: argparse.Namespace) -> int:
    from sessions.control import wait

    state = wait(_store(), args.session, args.timeout)
    print(f"session {args.session}: {state}")
    return 0 if state == "done" else (3 if state == "timeout" else 1)


# -- looking ---------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from engine.progress import format_seconds
    from sessions.control import effective_state, snapshot

    store = _store()
    if args.session is None:
        rows = [dict(s, state=effective_state(store, s["id"])) for s in store.list_sessions()]
        if args.json:
            print(json.dumps(rows, default=str))
            return 0
        if not rows:
            print("no sessions yet: posegen init PROJECT ... then posegen session new PROJECT")
        for s in rows:
            kind = " (preview)" if s.get("kind") == "preview" else ""
            print(f"{s['id']:>4}  {s['project_name']:<20} {s['state']:<12} "
                  f"{s['chunks_done']}/{s['chunks_total']} chunks{kind}")
        return 0
    snap = snapshot(store, args.session)
    if args.json:
        print(json.dumps(snap, default=str))
        return 0
    kind = " preview" if snap["kind"] == "preview" else ""
    origin = f", from preview {snap['from_preview']}" if snap["from_preview"] else ""
    print(f"session {snap['id']}{kind} ({snap['project']}{origin}): {snap['state']}   "
          f"ETA {format_seconds(snap['eta_seconds'])}")
    for c in snap["chunks"]:
        bar = f"{c['step']}/{c['steps']}"
        err = f"  {c['error']}" if c["error"] else ""
        doing = (f"  {c['phase']} {format_seconds(c['phase_seconds'])}"
                 if c.get("phase") else "")
        print(f"  chunk {c['index']:>3} {c['role']:<6} {c['start']:>6}-{c['end']:<6} "
              f"{c['status']:<8} {bar}{doing}{err}")
    for w in snap["workers"]:
        where = f" on {w['host']}" if w.get("host") and w["host"] != socket.gethostname() else ""
        print(f"  worker {w['id']} pid {w['pid']} {w['device']}{where} "
              f"{'alive' if w['alive'] else 'ended: ' + str(w['end_reason'])}")
    if snap["video"]:
        print(f"  video: {snap['video']}")
    if snap["on_done"]:
        ran = " (ran for its last ending)" if snap["on_done_claimed_at"] else ""
        print(f"  on done: {snap['on_done']}{ran}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    from sessions.control import event_line, worker_logs

    store = _store()
    store.get_session(args.session)
    last = 0
    events = store.events(args.session)
    for e in events[-args.lines:]:
        print(event_line(e))
    last = events[-1]["id"] if events else 0
    for path in worker_logs(args.session):
        print(f"--- {path}")
        lines = path.read_text(errors="replace").splitlines()
        print("\n".join(lines[-args.lines:]))
    while args.follow:
        time.sleep(1)
        for e in store.events(args.session, after_id=last):
            print(event_line(e), flush=True)
            last = e["id"]
    return 0


# -- results ---------------------------------------------------------------------
def cmd_retry(args: argparse.Namespace) -> int:
    from sessions.commands import retry

    print(retry(_store(), args.session, args.chunk, seed=args.seed).message())
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from sessions.tasks import merge_session

    print(merge_session(args.session, lambda text: None)["video"])
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from sessions.commands import cache

    report = cache(_store(), args.session, clear=args.clear)
    for kind, size in report.usage.items():
        print(f"{kind:<28} {size / 1e6:>10.1f} MB")
    if args.clear:
        print(report.message())
    return 0


def cmd_open(args: argparse.Namespace) -> int:
    """The path on stdout (for scripts); what was done with it on stderr."""
    from sessions.videos import find_video
    from sessions.viewer import open_video

    path, *notes = open_video(find_video(_store(), args.session, args.chunk).resolve())
    print(path)
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), argv, (*USER_ERRORS, StoreError))


if __name__ == "__main__":
    sys.exit(main())
