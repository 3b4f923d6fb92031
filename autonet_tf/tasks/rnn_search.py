"""The DARTS recurrent-cell search on a corpus (:class:`~autonet_tf.configs.RNNSearchConfig`)."""

from __future__ import annotations

from autonet_tf.data import text
from autonet_tf.tasks.search_task import SearchTask
from autonet_tf.training.rnn_search_trainer import RNNSearchTrainer


class RNNSearchTask(SearchTask):
    """Searches one recurrent cell: alphas of shape (36, 5), one picture."""

    structural = ("emsize", "nhid", "steps", "order", "batch_size")

    def load_data(self):
        return text.load(self.config.data.dataset, self.config.data.data_dir)

    def build(self, data, strategy):
        return RNNSearchTrainer(self.config, data, strategy)
