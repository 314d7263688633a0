"""`python run_camera.py ...` = `glanet run ...`: the main job, at the clone's root (stream/cli/run.py)."""

import sys

import stream.cli.run

if __name__ == "__main__":
    sys.exit(stream.cli.run.main())
else:  # `import run_camera` is the module itself, so tests and callers see (and patch) the same names
    sys.modules[__name__] = stream.cli.run
