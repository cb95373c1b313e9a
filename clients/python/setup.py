"""Build hook: generates the gRPC stubs of streammgr.v1 with grpcio-tools.

The proto is looked for in $STREAMMGR_PROTO_DIR, ./proto (an sdist carries
a copy there) and ../../proto (the repository). Normal builds write the
stubs into the build directory only; editable installs write them into
streammgr/v1/ beside the sources (git-ignored).
"""

import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.sdist import sdist

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO = os.path.join("streammgr", "v1", "streammgr.proto")


def proto_root():
    candidates = [os.environ.get("STREAMMGR_PROTO_DIR"), os.path.join(HERE, "proto"),
                  os.path.join(HERE, "..", "..", "proto")]
    for c in candidates:
        if c and os.path.isfile(os.path.join(c, PROTO)):
            return os.path.abspath(c)
    raise SystemExit(f"streammgr: {PROTO} not found in {[c for c in candidates if c]}")


def generate(out_dir):
    import importlib.resources

    from grpc_tools import protoc

    root = proto_root()
    include = str(importlib.resources.files("grpc_tools") / "_proto")
    os.makedirs(os.path.join(out_dir, "streammgr", "v1"), exist_ok=True)
    args = ["grpc_tools.protoc", f"-I{root}", f"-I{include}", f"--python_out={out_dir}",
            f"--grpc_python_out={out_dir}", f"--pyi_out={out_dir}", os.path.join(root, PROTO)]
    if protoc.main(args) != 0:
        raise SystemExit("streammgr: grpc_tools.protoc failed")


class BuildPy(build_py):
    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            generate(HERE)
        else:
            generate(self.build_lib)


class Sdist(sdist):
    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        dest = os.path.join(base_dir, "proto", PROTO)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        shutil.copyfile(os.path.join(proto_root(), PROTO), dest)


setup(cmdclass={"build_py": BuildPy, "sdist": Sdist})
