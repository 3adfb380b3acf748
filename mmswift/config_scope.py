"""``mmswift::`` config paths: ``_base_ = 'mmswift::det/mask-rcnn_swiftformer-l1_fpn_1x_coco.py'``.

mmengine resolves ``PKG::path`` to ``<PKG's folder>/.mim/configs/path`` (setup.py
links the configs there), but only for the packages in its fixed table
``mmengine.config.utils.MODULE2PACKAGE`` (mmdet, mmseg, mmpretrain, ...), and
mmengine 0.10 finds a package's folder from its distribution's location, which
for an editable install (``pip install -e .``, PEP 660) is site-packages, where
no ``mmswift/`` folder is. :func:`register_config_scope` adds mmswift to that
table and, for mmswift only and only when mmengine's answer is not a folder,
answers with the imported package's folder (what later mmengine versions do for
every package, through ``importlib.util.find_spec``).

It must run before the config that names ``mmswift::`` is parsed (before
``Config.fromfile``): mmengine reads ``_base_`` before it imports a config's
``custom_imports``.

It also remembers mmengine's answers to "which metafile entry is this
``PKG::`` path?" (:func:`remember_metafile_lookups`): mmengine 0.10 answers by
parsing every metafile of the package (212 YAML files for mmseg 1.2, about
0.27 s) for each ``PKG::`` base of each config it reads, even for the
``_base_/...`` files that no metafile lists, so every mmswift config cost
about a second to read, again at every read in the same process.
"""
import copy
import functools
import os.path as osp

PACKAGE = 'mmswift'


def _package_folder() -> str:
    return osp.dirname(osp.abspath(__file__))


def remember_metafile_lookups() -> None:
    """Answer each (package folder, config name) metafile lookup of mmengine
    once per process: its result, or its ValueError (a ``_base_`` file that
    no metafile lists, which mmengine then finds by path). The metafiles are
    installed files, read-only while a process runs. Idempotent."""
    from mmengine.config import utils as config_utils
    lookup = config_utils._get_cfg_metainfo
    if getattr(lookup, '_mmswift_remembered', False):
        return
    answers = {}

    @functools.wraps(lookup)
    def remembered(package_path: str, cfg_path: str) -> dict:
        key = (package_path, cfg_path)
        if key not in answers:
            try:
                answers[key] = (lookup(package_path, cfg_path), None)
            except ValueError as e:
                answers[key] = (None, str(e))
        found, error = answers[key]
        if error is not None:
            raise ValueError(error)
        return copy.deepcopy(found)

    remembered._mmswift_remembered = True  # type: ignore[attr-defined]
    config_utils._get_cfg_metainfo = remembered


def register_config_scope() -> None:
    """Let mmengine resolve ``mmswift::...`` config paths, and read the
    packages' metafiles once per process. Idempotent."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)
    remember_metafile_lookups()

    lookup = config_module.get_installed_path
    if getattr(lookup, '_mmswift_scope', False):
        return

    def get_installed_path(package: str) -> str:
        path = lookup(package)
        if package == PACKAGE and not osp.isdir(path):
            return _package_folder()
        return path

    get_installed_path._mmswift_scope = True  # type: ignore[attr-defined]
    config_module.get_installed_path = get_installed_path
