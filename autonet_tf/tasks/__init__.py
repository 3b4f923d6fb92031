"""Tasks: what is particular to each kind of run, and the one driver that runs them.

=================  ===========================================  ==================
task               trainer                                      writes at the end
=================  ===========================================  ==================
CNNSearchTask      training.search_trainer.SearchTrainer        genotype, alphas,
                                                                two cell pictures
RNNSearchTask      training.rnn_search_trainer.RNNSearchTrainer genotype, alphas,
                                                                one cell picture
CNNTrainTask       training.network_trainer.NetworkTrainer      result.json,
                                                                SavedModel/TFLite
RNNTrainTask       training.rnn_trainer.RNNTrainer              result.json,
                                                                sequence scorer
=================  ===========================================  ==================

``run(task, strategy)`` (:mod:`autonet_tf.tasks.base`) validates, checks
the run directory, loads, builds, runs and finishes any of them.
"""

from autonet_tf.tasks.base import Task, run
from autonet_tf.tasks.cnn_search import CNNSearchTask
from autonet_tf.tasks.cnn_train import CNNTrainTask, TrainResult
from autonet_tf.tasks.rnn_search import RNNSearchTask
from autonet_tf.tasks.rnn_train import RNNTrainResult, RNNTrainTask
from autonet_tf.tasks.search_task import SearchResult

__all__ = ["Task", "run", "CNNSearchTask", "RNNSearchTask", "CNNTrainTask", "RNNTrainTask",
           "SearchResult", "TrainResult", "RNNTrainResult"]
