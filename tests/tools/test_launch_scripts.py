"""The commands tools/slurm_train.sh and tools/dist_train.sh build.

A stand-in `srun` on PATH records its arguments and environment, so no Slurm
cluster is needed. The real torchrun run is in test_dist_train.py.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

from ..conftest import REPO_ROOT

RECORDING_SRUN = '''#!{python}
import json, os, sys
with open(os.environ['SRUN_RECORD'], 'w') as record:
    json.dump(dict(argv=sys.argv[1:], master_port=os.environ.get('MASTER_PORT'),
                   python_path=os.environ.get('PYTHONPATH')), record)
'''


def run_script(name: str, args: list[str], env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(REPO_ROOT / 'tools' / name), *args],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=60)


def test_slurm_script_runs_srun(tmp_path: Path):
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(RECORDING_SRUN.format(python=sys.executable))
    srun.chmod(0o755)
    record_file = tmp_path / 'srun.json'
    env = dict(PATH=f'{srun.parent}{os.pathsep}{os.environ["PATH"]}',
               SRUN_RECORD=str(record_file), GPUS_PER_NODE='4', PORT='29611',
               PYTHON='/opt/venv/bin/python')

    result = run_script('slurm_train.sh', ['gpu', 'gsam', 'configs/gsam_vith.py', '8',
                                           '--work-dir', 'work_dirs/x'], env)

    assert result.returncode == 0, result.stderr
    record = json.loads(record_file.read_text())
    argv = record['argv']
    assert argv[:2] == ['-p', 'gpu']
    assert '--job-name=gsam' in argv
    assert '--ntasks=8' in argv
    assert '--ntasks-per-node=4' in argv
    assert '--gres=gpu:4' in argv
    train_index = argv.index('/opt/venv/bin/python')
    assert argv[train_index + 1:] == ['-u', str(REPO_ROOT / 'tools' / 'train.py'),
                                      'configs/gsam_vith.py', '--launcher', 'slurm',
                                      '--work-dir', 'work_dirs/x']
    assert record['master_port'] == '29611'
    assert record['python_path'].split(os.pathsep)[0] == str(REPO_ROOT)


def test_slurm_script_usage_without_arguments():
    result = run_script('slurm_train.sh', ['gpu'], {})

    assert result.returncode == 2
    assert 'usage:' in result.stderr


def test_dist_script_usage_without_arguments():
    result = run_script('dist_train.sh', ['configs/gsam_vith.py'], {})

    assert result.returncode == 2
    assert 'usage:' in result.stderr
