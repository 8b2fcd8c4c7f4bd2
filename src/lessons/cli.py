"""``lesson [NAME] [--interactive]``: list the lessons, or run one (a ClearML task in
``<project>/lessons``)."""

import argparse

from src.arguments import output_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None, metavar="NAME",
                        help="the lesson to run; none: list them")
    parser.add_argument("--interactive", action="store_true",
                        help="change each step's parameter at a prompt and see the effect (enter: next, q: "
                             "quit)")
    parser.add_argument("--output-dir", type=output_folder, default=None,
                        help="where figures and the offline session go (default: runs/lessons/NAME-TIME)")
    tracking = parser.add_mutually_exclusive_group()
    tracking.add_argument("--no-track", action="store_true", help="no ClearML task; figures are still saved")
    tracking.add_argument("--offline", action="store_true",
                          help="force a ClearML offline session (the default "
                                                                  "without a configured server)")
    parser.add_argument("--project", default=None,
                        help="ClearML project; the task goes to its 'lessons' sub-project "
                             "(default: tracking.project_name)")


def command(args: argparse.Namespace) -> tuple[int, str]:
    from src.lessons.runner import lesson_list, lesson_module, output_folder, run_lesson

    if args.name is None:
        return 0, lesson_list()  # the command's output: the lessons and their summaries
    lesson_module(args.name)  # an unknown name fails before any task is opened
    from rich.console import Console
    from rich.text import Text

    from src.config.tracking import TrackingConfig
    from src.tracking import NullTracker, Tracker

    output_dir = output_folder(args.name, args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    if args.no_track:
        tracker = NullTracker(output_dir=output_dir)
    else:
        project = args.project or TrackingConfig().project_name
        tracker = Tracker.start(project=f"{project}/lessons", task_name=f"lesson-{args.name}",
                                task_type="custom",
                                offline=True if args.offline else None, tags=("lesson", args.name),
                                output_dir=output_dir)
    with tracker:
        run_lesson(args.name, tracker=tracker, console=console, interactive=args.interactive,
                   ask=lambda prompt: console.input(Text(prompt)))  # Text: brackets are not markup
    session = tracker.close()
    console.print(f"figures: {output_dir / 'plots'}")
    if session is not None:
        console.print(f"offline session: {session}")
    return 0, ""
