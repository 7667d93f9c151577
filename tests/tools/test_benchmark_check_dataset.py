"""The synthetic dataset of tools/benchmark_check_dataset.py passes the check."""
from gsam_mm.datasets.dataset_report import check_split

from ..conftest import load_tool

benchmark = load_tool('benchmark_check_dataset')


def test_synthetic_dataset_is_valid(tmp_path):
    ann_file = benchmark.write_dataset(tmp_path, num_images=3, num_annotations=10,
                                       num_categories=2)

    report, annotations = check_split(['train'], str(ann_file), str(tmp_path / 'images'))

    assert report.problems == []
    assert report.statistics.num_images == 3
    assert report.statistics.num_instances == 10
    assert report.statistics.image_modes == {'RGB': 3}
