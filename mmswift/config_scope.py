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
"""
import os.path as osp

PACKAGE = 'mmswift'


def _package_folder() -> str:
    return osp.dirname(osp.abspath(__file__))


def register_config_scope() -> None:
    """Let mmengine resolve ``mmswift::...`` config paths. Idempotent."""
    from mmengine.config import config as config_module
    from mmengine.config import utils as config_utils

    config_utils.MODULE2PACKAGE.setdefault(PACKAGE, PACKAGE)

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
