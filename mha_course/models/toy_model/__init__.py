"""The toy Transformer: `config` (ToyConfig), `model` (ToyTransformer, its `run() -> Cache`),
`training` (the denoising objective, the training loop, sub-task accuracies), `checkpoint` (save,
load, the shipped checkpoint) and `task` (ToyTask: loss and accuracy with head gates, for
ablation and pruning).

    from mha_course.models import toy_model
    model = toy_model.load()            # the checkpoint shipped in the package
    report = toy_model.load_report()    # its heads.json: every head's measured role

Training *with* role reports (what notebook 04 and `python -m mha_course train-toy` run) is
`mha_course.experiments.toy_training.train`: measuring heads is analysis, which models do not
import.
"""

from mha_course.models.toy_model.checkpoint import (
                                                    DEFAULT_CHECKPOINT,
                                                    attend_text,
                                                    checkpoint_dir,
                                                    load,
                                                    load_report,
                                                    save,
)
from mha_course.models.toy_model.config import ToyConfig
from mha_course.models.toy_model.model import Block, BlockOutput, ToyOutput, ToyTransformer
from mha_course.models.toy_model.task import ToyTask
from mha_course.models.toy_model.training import (
                                                    accuracy_snapshot,
                                                    evaluate,
                                                    held_out_sentences,
                                                    train,
)

__all__ = ["ToyConfig", "ToyOutput", "ToyTransformer", "Block", "BlockOutput", "ToyTask", "train",
           "evaluate", "held_out_sentences", "accuracy_snapshot", "save", "load", "load_report",
           "checkpoint_dir", "attend_text", "DEFAULT_CHECKPOINT"]
