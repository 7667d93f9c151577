"""Package definition for gsam_mm, the Grounded-SAM fine-tuning plugin for MMDetection 3.x."""
from pathlib import Path

from setuptools import find_packages, setup


def read_requirements(name: str) -> list[str]:
    """Read one requirements file, skipping comments and blank lines."""
    lines = (Path(__file__).parent / 'requirements' / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith('#')]


setup(
    name='gsam_mm',
    version='0.1.0',
    description='Fine-tune Grounding DINO and Segment Anything together with MMDetection 3.x',
    long_description=Path(__file__).with_name('README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    python_requires='>=3.10',
    packages=find_packages(include=['gsam_mm', 'gsam_mm.*']),
    # mmcv 2.1.0 is left out on purpose: it has to be built with ops against
    # the installed torch (see tools/setup_env.sh), and a plain pip resolve
    # would fetch a build without them.
    install_requires=read_requirements('runtime.txt'),
    extras_require={'tests': read_requirements('tests.txt')},
)
