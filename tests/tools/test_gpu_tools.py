"""The GPU set-up and check tools, as far as a machine without a GPU can run
them: argument errors, the stop of `install` without CUDA, and the random
text encoder."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import BertModel

from gsam_mm.models.checkpoints import resolve_model_path

from ..conftest import REPO_ROOT, TEXT_ENCODER, load_tool

make_random_text_encoder = load_tool('make_random_text_encoder')
PYTHON_VERSION = '%d.%d' % sys.version_info[:2]


def run_script(name: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(['bash', str(REPO_ROOT / 'tools' / name), *args], text=True,
                          capture_output=True, env={'PATH': '/usr/bin:/bin', **env})


@pytest.mark.parametrize('name', ['offline_gpu_env.sh', 'gpu_check.sh'])
def test_script_without_arguments_prints_usage(name):
    result = run_script(name)

    assert result.returncode == 2
    assert result.stderr.startswith('usage: ')


def test_install_names_missing_download(tmp_path):
    result = run_script('offline_gpu_env.sh', 'install', str(tmp_path / 'wheels'),
                        str(tmp_path / 'site'), PYTHON=sys.executable)

    assert result.returncode == 1
    assert f"{tmp_path / 'wheels'}/wheels not found: run" in result.stderr
    assert f"download {tmp_path / 'wheels'} {PYTHON_VERSION}'" in result.stderr


def test_install_rejects_wheels_of_other_python(tmp_path):
    for folder in ('wheels', 'build-wheels'):
        (tmp_path / folder).mkdir()
    (tmp_path / 'mmcv-2.1.0.tar.gz').write_bytes(b'')
    (tmp_path / 'python_version').write_text('3.9')

    result = run_script('offline_gpu_env.sh', 'install', str(tmp_path), str(tmp_path / 'site'),
                        PYTHON=sys.executable)

    assert result.returncode == 1
    assert f'are for Python 3.9, but {sys.executable} is Python {PYTHON_VERSION}' in result.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the refusal without a GPU')
def test_install_stops_without_cuda(tmp_path):
    for folder in ('wheels', 'build-wheels'):
        (tmp_path / 'offline' / folder).mkdir(parents=True)
    (tmp_path / 'offline' / 'mmcv-2.1.0.tar.gz').write_bytes(b'')
    (tmp_path / 'offline' / 'python_version').write_text(PYTHON_VERSION)

    result = run_script('offline_gpu_env.sh', 'install', str(tmp_path / 'offline'),
                        str(tmp_path / 'site'), PYTHON=sys.executable)

    assert result.returncode == 1
    assert 'PyTorch finds no CUDA device: run install on the GPU machine' in result.stderr
    assert not (tmp_path / 'site').exists()


def test_random_text_encoder_loads_as_bert(tmp_path):
    make_random_text_encoder.main([str(tmp_path / 'bert'), '--tokenizer', TEXT_ENCODER,
                                   '--size', 'minilm'])

    config = json.loads((tmp_path / 'bert' / 'config.json').read_text())
    assert config['hidden_size'] == 384
    assert config['num_hidden_layers'] == 6
    assert (tmp_path / 'bert' / 'vocab.txt').read_text() == \
        (Path(resolve_model_path(TEXT_ENCODER)) / 'vocab.txt').read_text()
    model = BertModel.from_pretrained(tmp_path / 'bert')
    assert model.embeddings.word_embeddings.num_embeddings == 30522


def test_random_text_encoder_rejects_other_vocabulary(tmp_path):
    (tmp_path / 'vocab.txt').write_text('[PAD]\n[UNK]\n')

    with pytest.raises(SystemExit, match='has 2 tokens; expected the 30522'):
        make_random_text_encoder.main([str(tmp_path / 'bert'), '--tokenizer', str(tmp_path)])
