"""Imported once by the grader's fork server, so that every notebook's process starts with the
course's libraries already loaded (forking takes milliseconds; importing them takes seconds).

Nothing here computes: the server must not start thread pools (OpenMP, BLAS) before it forks.
The grader starts it with one BLAS/OpenMP thread per notebook (OMP_NUM_THREADS=1 and friends).
"""

import matplotlib

matplotlib.use("Agg")

import IPython.core.interactiveshell  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import matplotlib.pyplot  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import matplotlib_inline.backend_inline  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import numpy  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import sklearn.linear_model  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import sklearn.pipeline  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import sklearn.preprocessing  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import threadpoolctl  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import torch  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import torch.nn.functional  # noqa: E402,F401 (after matplotlib.use; loaded, not used)

import mha_course.analysis.heads  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.checks  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.examples  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.models.induction  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.models.toy_language  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.models.toy_model  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.np_attention  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.torch_attention  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
import mha_course.viz  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
from mha_course.grading import worker  # noqa: E402,F401 (after matplotlib.use; loaded, not used)
