"""Tests run in one process do not share mmengine's named instances
(conftest.fresh_mmengine_instances)."""
import glob
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.model import BaseModel

from .conftest import DEMO_CONFIGS, REPO, logged_scalars


class _Toy(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, inputs=None, data_samples=None, mode='tensor'):
        return self.linear(inputs)


@pytest.mark.parametrize('run', ['first', 'second'])
def test_an_in_process_runner_writes_only_into_its_own_work_dir(tmp_path, run):
    """Both cases build a Runner with the demo config's visualizer, named
    'visualizer' as in every mmseg/mmdet config: without the fixture the
    second case gets the first's visualizer and writes its scalars into the
    first case's work dir (and its logger and message hub too when built in
    the same second: their names are the start time to the second)."""
    from mmengine.runner import Runner
    visualizer = Config.fromfile(os.path.join(REPO, DEMO_CONFIGS['seg'])).visualizer.to_dict()
    assert visualizer['name'] == 'visualizer'
    work = str(tmp_path / 'work')
    runner = Runner(model=_Toy(), work_dir=work, visualizer=visualizer, default_scope='mmseg',
                    randomness=dict(seed=0))
    assert runner.message_hub.get_info('run') is None  # nothing inherited
    runner.message_hub.update_info('run', run)
    runner.visualizer.add_scalars({'loss': 1.0}, step=1)
    runner.logger.info(f'the {run} run')

    assert logged_scalars(work) == [{'loss': 1.0, 'step': 1}]
    logs = glob.glob(os.path.join(work, '*', '*.log'))
    assert len(logs) == 1 and f'the {run} run' in open(logs[0]).read()
