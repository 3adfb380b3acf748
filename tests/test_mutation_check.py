"""tools/mutation_check.py's list stays in step with the code (the check
itself, minutes per mutant, is run by hand: see the tool's docstring)."""
import subprocess

import pytest

from .conftest import REPO, load_tool

tool = load_tool('mutation_check')


def test_every_snippet_occurs_exactly_once_and_names_are_unique():
    """A snippet the code no longer holds would make its mutant silently
    vanish; this fails first, naming it."""
    assert tool.snippet_problems(REPO, tool.MUTANTS) == []
    names = [m.name for m in tool.MUTANTS]
    assert len(names) == len(set(names))
    assert all(m.find != m.replace for m in tool.MUTANTS)


def test_a_missing_snippet_is_refused(tmp_path):
    (tmp_path / 'a.py').write_text('x = 1\nx = 1\n')
    missing = tool.Mutant('missing', 'a.py', 'y = 2', 'y = 3', 'not there')
    twice = tool.Mutant('twice', 'a.py', 'x = 1', 'x = 2', 'ambiguous')
    problems = tool.snippet_problems(str(tmp_path), [missing, twice])
    assert len(problems) == 2 and 'found 0 times' in problems[0] and 'found 2 times' in problems[1]
    for m in (missing, twice):
        with pytest.raises(ValueError, match=m.name):
            tool.apply(str(tmp_path), m)


def test_verdicts_and_the_killing_test_id():
    out = ('..F\n=== short test summary info ===\n'
           'FAILED tests/test_kernels.py::test_x[xs-blocked] - AssertionError: assert 1 < 0\n')
    assert tool.first_failure(out) == 'tests/test_kernels.py::test_x[xs-blocked]'

    def proc(rc, out=''):
        return subprocess.CompletedProcess([], rc, out, '')
    assert tool.verdict(proc(0)) == 'survived'
    assert tool.verdict(proc(1, out)) == 'killed'
    assert [tool.verdict(proc(rc)) for rc in (2, 3, 4, 5, -1)] == ['error'] * 5
    assert tool.verdict(proc(0, 'mutation_check guard: mmswift imported from /x')) == 'error'


def test_relevant_test_files_run_first_and_missing_ones_are_skipped(tmp_path, capsys):
    (tmp_path / 'tests').mkdir()
    for name in ('test_kernels.py', 'test_roi_align.py'):
        (tmp_path / 'tests' / name).write_text('')
    roi = next(m for m in tool.MUTANTS if m.path.endswith('roi_extractor.py'))
    files = tool.test_files(str(tmp_path), ['tests/test_kernels.py', 'tests/test_gone.py',
                                            'tests/test_roi_align.py'], roi)
    assert files == ['tests/test_roi_align.py', 'tests/test_kernels.py']
    assert 'tests/test_gone.py does not exist' in capsys.readouterr().err
