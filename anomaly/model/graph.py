"""The autoencoder as the worker runs it: an ONNX graph executed by onnxruntime.

The training job exports the fitted network once (training/graph.py) and everything after
the fit (calibration, the cleaning, the gate, the benchmarks, the worker) scores through the
same graph, so what the gate judged is what the worker serves. The graph maps scaled windows
(B, W, F), float32, to their reconstruction of the same shape. No torch here: the worker's
image carries onnxruntime (tens of MB) instead of PyTorch (GB).

Threads: each session computes on `threads` threads (the worker's WORKER_SCORE_THREADS, set
once at start with `set_threads`; one by default: the batch is small and the worker's pods
are sized for one core).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from anomaly.model.errors import ArtifactError

INPUT, OUTPUT = "windows", "rebuilt"
_threads = 1


def set_threads(threads: int) -> None:
    """The threads of every graph loaded from now on (a process-wide setting, like torch's)."""
    global _threads
    _threads = threads


class Graph:
    """A loaded graph (`data`: its ONNX bytes) for windows of `window` records of
    `n_features` values; ArtifactError when the bytes are not such a graph."""

    def __init__(self, data: bytes, window: int, n_features: int) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = _threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: its warnings go to stderr unformatted
        try:
            self._session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own types; all mean "not a graph"
            raise ArtifactError(f"not a loadable ONNX graph ({exc})") from exc
        inputs, outputs = self._session.get_inputs(), self._session.get_outputs()
        names = ([i.name for i in inputs], [o.name for o in outputs])
        if names != ([INPUT], [OUTPUT]):
            raise ArtifactError(
                f"the graph reads {names[0]} and writes {names[1]}, not [{INPUT!r}] and "
                f"[{OUTPUT!r}]"
            )
        shape = inputs[0].shape  # a dimension left free (a name, not a size) takes any size
        if len(shape) != 3 or any(
            isinstance(size, int) and size != expected
            for size, expected in zip(shape[1:], (window, n_features), strict=True)
        ):
            raise ArtifactError(
                f"the graph reads windows of shape {shape}, not (batch, {window}, {n_features})"
            )
        self.data = data

    @property
    def threads(self) -> int:
        """The threads it computes on."""
        return int(self._session.get_session_options().intra_op_num_threads)

    def __call__(self, scaled: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """The reconstruction of scaled windows (B, W, F), float32."""
        out: npt.NDArray[np.float32] = self._session.run([OUTPUT], {INPUT: scaled})[0]
        return out
