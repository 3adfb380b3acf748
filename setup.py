"""mmswift: SwiftFormer for dense prediction on the OpenMMLab 2.x stack."""
import os
import os.path as osp
import shutil

from setuptools import find_packages, setup
from setuptools.command.egg_info import egg_info

REPO = osp.dirname(osp.abspath(__file__))
# What mmdet / mmseg ship in <package>/.mim: mmengine resolves ``mmswift::det/...``
# to mmswift/.mim/configs/det/..., mim reads .mim/model-index.yml (``mim search``)
# and runs .mim/tools/train.py and test.py (``mim train`` / ``mim test``).
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def read_version() -> str:
    ns: dict = {}
    with open(osp.join(REPO, 'mmswift', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def read_requirements(name: str) -> list:
    with open(osp.join(REPO, 'requirements', name)) as f:
        return [ln.split('#')[0].strip() for ln in f if ln.split('#')[0].strip()]


def add_mim_extension() -> None:
    """Make mmswift/.mim/{configs,tools,model-index.yml} point at the checkout's own.

    Symbolic links, not copies (so they are not duplicated in git, see .gitignore):
    an editable install sees the checkout through them, and a wheel or sdist
    build copies the files they point at (build_py and sdist follow links).
    Where links cannot be made (Windows without the privilege), copies.
    In an unpacked sdist the copies it carries are kept.
    """
    mim = osp.join(REPO, 'mmswift', '.mim')
    if not all(osp.exists(osp.join(REPO, name)) for name in MIM_FILES):
        return
    os.makedirs(mim, exist_ok=True)
    for name in MIM_FILES:
        src, dst = osp.join(REPO, name), osp.join(mim, name)
        rel = osp.relpath(src, mim)
        if osp.islink(dst) and os.readlink(dst) == rel:
            continue
        if osp.islink(dst) or osp.isfile(dst):
            os.remove(dst)
        elif osp.isdir(dst):
            shutil.rmtree(dst)
        try:
            os.symlink(rel, dst)
        except OSError:
            if osp.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
            else:
                shutil.copyfile(src, dst)


class EggInfoWithMim(egg_info):
    """egg_info runs first in every build (editable, wheel, sdist) and lists the
    package's files: the .mim links must exist by then."""

    def run(self):
        add_mim_extension()
        super().run()


setup(
    name='mmswift',
    version=read_version(),
    description='SwiftFormer backbones for Mask R-CNN (mmdet) and Semantic FPN (mmseg)',
    long_description=open(osp.join(REPO, 'README.md')).read()
    if osp.exists(osp.join(REPO, 'README.md')) else '',
    long_description_content_type='text/markdown',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools')),
    include_package_data=True,  # mmswift/.mim/*, listed in MANIFEST.in
    zip_safe=False,
    python_requires='>=3.10',
    # Ranges, not pins: installing the plugin into an OpenMMLab environment that
    # satisfies them changes nothing. The exact set that is tested is
    # requirements/tested.txt, which tools/install.sh applies as constraints.
    # torch and mmcv (with compiled ops) must be there first (tools/install.sh or
    # `mim install mmcv`): PyPI has no binary mmcv.
    install_requires=['torch>=2.0'] + read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
    cmdclass={'egg_info': EggInfoWithMim},
    license='Apache-2.0',
)
