"""The same model saved twice gives the same bytes (so one sha256), and loads as before.

Across processes and masters the e2e cluster test checks it on the demo's models
(``test_the_registry_holds_the_same_sha256s``); here, within one process, where skops's
``id()``-named arrays and Keras's counted layer names would differ.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from lakecast.models.flavors import keras_flavor, sklearn_flavor
from lakecast.models.flavors.reproducible import canonical_skops, rewrite_zip
from lakecast.models.training import GradientBoostingRecipe, MlpRecipe

ROWS = np.random.default_rng(7).normal(size=(600, 5))
LABELS = (ROWS[:, 0] + ROWS[:, 1] > 0).astype(np.int64)


def _saved(save: object, model: object, folder: Path) -> bytes:
    folder.mkdir()
    return save(model, folder).read_bytes()  # type: ignore[operator]


def _entries(data: bytes, path: Path) -> list[zipfile.ZipInfo]:
    path.write_bytes(data)
    with zipfile.ZipFile(path) as archive:
        return archive.infolist()


def test_a_tree_model_trained_twice_is_saved_as_the_same_bytes(tmp_path: Path) -> None:
    recipe = GradientBoostingRecipe(max_iter=15)
    first = _saved(sklearn_flavor.save, recipe.fit(ROWS, LABELS), tmp_path / "a")
    second = _saved(sklearn_flavor.save, recipe.fit(ROWS, LABELS), tmp_path / "b")
    assert first == second
    infos = _entries(first, tmp_path / "x.skops")
    assert {info.date_time for info in infos} == {(1980, 1, 1, 0, 0, 0)}
    names = [info.filename for info in infos]
    assert names == sorted(names) and "schema.json" in names
    assert all(n == "schema.json" or int(n.removesuffix(".npy")) < 1000 for n in names)

    model = recipe.fit(ROWS, LABELS)
    loaded = sklearn_flavor.load(first, "test", sha256_verified=True, width=5)
    np.testing.assert_array_equal(loaded.predict_proba(ROWS), model.predict_proba(ROWS))


def test_renumbered_ids_keep_one_object_shared(tmp_path: Path) -> None:
    import skops.io

    shared = np.arange(6.0)
    path = tmp_path / "shared.skops"
    skops.io.dump([shared, shared, np.ones(2)], path)
    rewrite_zip(path, canonical_skops)
    first, second, other = skops.io.load(path, trusted=[])
    assert first is second  # skops's memo still joins them
    np.testing.assert_array_equal(first, shared)
    np.testing.assert_array_equal(other, np.ones(2))


def test_a_keras_model_trained_twice_in_one_process_is_saved_as_the_same_bytes(
    tmp_path: Path,
) -> None:
    recipe = MlpRecipe(hidden=(8,), epochs=1, batch_size=128)
    first_model = recipe.fit(ROWS, LABELS)
    first = _saved(keras_flavor.save, first_model, tmp_path / "a")
    # Keras would have named this one's layers dense_1 and its optimizer adam_1.
    second = _saved(keras_flavor.save, recipe.fit(ROWS, LABELS), tmp_path / "b")
    assert first == second
    assert {info.date_time for info in _entries(first, tmp_path / "x.keras")} == {
        (1980, 1, 1, 0, 0, 0)
    }
    x = ROWS.astype(np.float32)
    loaded = keras_flavor.load(first, "test")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), first_model.predict_on_batch(x))
