"""Top-1 accuracy of :class:`mmswift.models.SwiftFormerClassifier`'s
predictions (mmpretrain's ``Accuracy`` does not import without torchvision)."""
from typing import List, Sequence

from mmengine.evaluator import BaseMetric

from mmswift.registry import METRICS


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Percent of samples whose predicted label is the ground truth."""

    default_prefix = 'accuracy'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        self.results.extend(int(s['pred_label'] == s['gt_label']) for s in data_samples)

    def compute_metrics(self, results: List[int]) -> dict:
        return dict(top1=100.0 * sum(results) / max(len(results), 1))
