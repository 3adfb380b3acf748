"""Every door through which a checkpoint comes in, tried with generated
files that are not checkpoints: each answer is one line naming the file and
what it is, exit status 2, and only a genuinely disallowed global is ever
offered for allowing."""
import argparse
import gzip
import io
import os
import zipfile

import cv2
import numpy as np
import pytest
import torch

from mmswift.errors import CheckpointError
from mmswift.fileio import checkpoint_problem, read_checkpoint
from mmswift.models import SwiftFormer

from .conftest import REPO, load_tool

SEG = os.path.join(REPO, 'configs/seg/fpn_swiftformer-xs_8xb4-40k_ade20k-512x512.py')


class _RunsCode:
    def __reduce__(self):
        return (os.system, ('true',))


@pytest.fixture(scope='module')
def good(tmp_path_factory) -> bytes:
    buf = io.BytesIO()
    torch.save({'state_dict': SwiftFormer('xs').state_dict(), 'meta': {}}, buf)
    return buf.getvalue()


def not_checkpoints(folder, good: bytes) -> dict:
    """name -> (path, words the message must hold). Generated: random bytes
    of many lengths, other formats, zips without a pickle, truncations of a
    real checkpoint at many offsets."""
    rng = np.random.default_rng(0)
    cases = {}

    def put(name, data, *words):
        path = os.path.join(folder, name)
        with open(path, 'wb') as f:
            f.write(data)
        cases[name] = (path, words)

    for n in (1, 2, 7, 8, 9, 16, 100, 4096, 65537):
        data = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        put(f'random_{n}.pth', b'\x00' + data[1:], 'not a checkpoint')
    image = (rng.random((32, 48, 3)) * 255).astype(np.uint8)
    put('photo.png', cv2.imencode('.png', image)[1].tobytes(), 'PNG image')
    put('photo.jpg', cv2.imencode('.jpg', image)[1].tobytes(), 'JPEG image')
    put('weights.pth.gz', gzip.compress(good), 'gzip archive')
    put('config.json', b'{"model": "swiftformer"}', 'not a checkpoint')
    put('error_page.pth', b'<html><body>404</body></html>', 'HTML')
    put('empty.pth', b'', 'empty')
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, 'w') as z:
        z.writestr('readme.txt', 'no pickle here')
    put('other.zip', zipped.getvalue(), 'without data.pkl')
    for frac in (0.0001, 0.01, 0.1, 0.33, 0.5, 0.9, 0.999):
        cut = max(3, int(len(good) * frac))
        put(f'cut_{frac}.pth', good[:cut], 'truncated')
    put('cut_last_byte.pth', good[:-1], 'truncated')
    return cases


def test_the_reader_names_what_each_file_is(tmp_path, good):
    for name, (path, words) in not_checkpoints(str(tmp_path), good).items():
        assert checkpoint_problem(path) is not None, name
        with pytest.raises(CheckpointError) as e:
            read_checkpoint(path, what='CHECKPOINT')
        msg = str(e.value)
        assert '\n' not in msg and path in msg and msg.startswith('CHECKPOINT: '), name
        for word in words:
            assert word in msg, (name, msg)
        assert 'SAFE_GLOBALS' not in msg and 'allow' not in msg, (name, msg)
    good_path = tmp_path / 'good.pth'
    good_path.write_bytes(good)
    assert checkpoint_problem(str(good_path)) is None
    assert set(read_checkpoint(str(good_path))) == {'state_dict', 'meta'}


def test_a_damaged_pickle_inside_a_complete_zip_is_not_offered_for_allowing(tmp_path, good):
    src = zipfile.ZipFile(io.BytesIO(good))
    out = io.BytesIO()
    with zipfile.ZipFile(out, 'w') as z:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith('data.pkl'):  # garbage where the pickle was
                data = bytes(np.random.default_rng(1).integers(0, 256, len(data), dtype=np.uint8))
            z.writestr(info, data)
    path = tmp_path / 'damaged.pth'
    path.write_bytes(out.getvalue())
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(path))
    assert 'damaged or not a checkpoint' in str(e.value) and 'allow' not in str(e.value)


def test_only_a_genuinely_disallowed_global_is_offered(tmp_path):
    allowable = tmp_path / 'namespace.pth'
    torch.save({'meta': {'args': argparse.Namespace(lr=0.1)}}, allowable)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(allowable))
    assert 'contains argparse.Namespace' in str(e.value)
    assert 'MMSWIFT_SAFE_GLOBALS=argparse.Namespace' in str(e.value)

    blocked = tmp_path / 'runs_code.pth'
    torch.save({'meta': _RunsCode()}, blocked)
    with pytest.raises(CheckpointError) as e:
        read_checkpoint(str(blocked))
    assert 'contains posix.system' in str(e.value) and 'never unpickles' in str(e.value)
    assert 'SAFE_GLOBALS' not in str(e.value)

    legacy = tmp_path / 'legacy.pth'  # torch's pre-zip format still loads
    torch.save({'w': torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(read_checkpoint(str(legacy))['w'], torch.ones(2))


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) >= 1
    return err[-1]


DOORS = {
    'init_cfg': None,  # the backbone's init_weights
    'convert_checkpoint': lambda path, tmp: [path, str(tmp / 'out.pth')],
    'visualize_features': lambda path, tmp: [os.path.join(REPO, 'docs/figures/gallery_stage1.png'),
                                             'xs', path, '--out-dir', str(tmp / 'vis')],
    'export_onnx': lambda path, tmp: ['xs', path, '--out', str(tmp / 'm.onnx')],
    'test': lambda path, tmp: [SEG, path, '--work-dir', str(tmp / 'w')],
    'train': lambda path, tmp: [SEG, '--resume', path, '--work-dir', str(tmp / 'w')],
}


# the 'test' and 'train' doors build a Runner: end-to-end tool runs, so slow
@pytest.mark.parametrize('door', [pytest.param(d, marks=pytest.mark.slow) if d in ('test', 'train')
                                  else d for d in sorted(DOORS)])
def test_every_door_answers_in_one_line_with_exit_2(door, tmp_path, good, capsys):
    cases = not_checkpoints(str(tmp_path), good)
    for name in ('random_4096.pth', 'photo.jpg', 'cut_0.5.pth', 'other.zip'):
        path, words = cases[name]
        if door == 'init_cfg':
            model = SwiftFormer('xs', init_cfg=dict(type='Pretrained', checkpoint=path))
            with pytest.raises(CheckpointError) as e:
                model.init_weights()
            line = 'error: ' + str(e.value)
            assert line.startswith('error: model.backbone.init_cfg.checkpoint: ')
        else:
            rc = load_tool(door).main(DOORS[door](path, tmp_path))
            line = _one_error_line(capsys)
            assert rc == 2, (door, name, line)
        assert line.startswith('error: ') and path in line, (door, name, line)
        assert all(w in line for w in words), (door, name, line)
        assert 'SAFE_GLOBALS' not in line, (door, name, line)
