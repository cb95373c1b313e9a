"""python -m streammgr SCRIPT [ARGS...]: runs an unmodified asyncio program
with streammgr.install() in effect (the daemon from $STREAMMGR_ADDR, else
the default socket), as if it were run with python SCRIPT ARGS...

    python -m streammgr -m MODULE [ARGS...]   runs a module the same way.
"""

import runpy
import sys

import streammgr


def main() -> None:
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip(), file=sys.stderr)
        sys.exit(2)
    streammgr.install()
    if args[0] == "-m":
        if len(args) < 2:
            print("python -m streammgr -m MODULE: no module", file=sys.stderr)
            sys.exit(2)
        sys.argv = args[1:]
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = args
        sys.path.insert(0, __import__("os").path.dirname(__import__("os").path.abspath(args[0])))
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
