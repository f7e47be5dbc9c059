"""callbacks.TensorBoard and the event files of lamina._tensorboard, read back with a reader
written here from the format's description (record framing, CRC-32C computed bit by bit, the
protobuf wire format), and with TensorBoard's own reader when it is installed."""
import glob
import json
import os
import struct
import warnings
import zlib

import numpy as np
import pytest

import lamina
from lamina import callbacks, layers


# ---- an independent reader ---------------------------------------------------------------------------

def _crc32c_bitwise(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def _masked(data):
    crc = _crc32c_bitwise(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """The payloads of a TFRecord file, every length and data CRC checked."""
    data = open(path, "rb").read()
    out, pos = [], 0
    while pos < len(data):
        header = data[pos:pos + 8]
        (length,) = struct.unpack("<Q", header)
        (length_crc,) = struct.unpack("<I", data[pos + 8:pos + 12])
        assert length_crc == _masked(header), f"length CRC mismatch at byte {pos} of {path}"
        payload = data[pos + 12:pos + 12 + length]
        (data_crc,) = struct.unpack("<I", data[pos + 12 + length:pos + 16 + length])
        assert len(payload) == length and data_crc == _masked(payload), f"data CRC mismatch at byte {pos}"
        out.append(payload)
        pos += 16 + length
    return out


def _varint(buf, pos):
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return result, pos


def fields(buf):
    """{field number: [values]} of a protobuf message: ints for varints, bytes otherwise."""
    out, pos = {}, 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            value, pos = buf[pos:pos + n], pos + n
        else:
            raise AssertionError(f"unexpected wire type {wire}")
        out.setdefault(number, []).append(value)
    return out


def _double(f, n, default=0.0):
    return struct.unpack("<d", f[n][0])[0] if n in f else default


def read_events(logdir):
    """Every event of the event files in `logdir`: dicts with wall_time, step, file_version and
    values (tag -> ("scalar", float) / ("histo", dict) / ("tensor", dict))."""
    events = []
    for path in sorted(glob.glob(os.path.join(logdir, "events.out.tfevents.*"))):
        for record in read_records(path):
            f = fields(record)
            ev = {"wall_time": _double(f, 1), "step": f.get(2, [0])[0],
                  "file_version": f[3][0].decode() if 3 in f else None, "values": {}}
            for summary in f.get(5, []):
                for raw in fields(summary).get(1, []):
                    v = fields(raw)
                    tag = v[1][0].decode()
                    if 2 in v:
                        ev["values"][tag] = ("scalar", struct.unpack("<f", v[2][0])[0])
                    elif 5 in v:
                        h = fields(v[5][0])
                        ev["values"][tag] = ("histo", {
                            "min": _double(h, 1), "max": _double(h, 2), "num": _double(h, 3),
                            "sum": _double(h, 4), "sum_squares": _double(h, 5),
                            "bucket_limit": list(np.frombuffer(h[6][0], "<f8")) if 6 in h else [],
                            "bucket": list(np.frombuffer(h[7][0], "<f8")) if 7 in h else []})
                    elif 8 in v:
                        t = fields(v[8][0])
                        meta = fields(v[9][0]) if 9 in v else {}
                        plugin = fields(meta[1][0]) if 1 in meta else {}
                        shape = [fields(d).get(1, [0])[0] for d in fields(t[2][0]).get(2, [])] if 2 in t else []
                        ev["values"][tag] = ("tensor", {
                            "dtype": t.get(1, [0])[0], "shape": shape, "strings": t.get(8, []),
                            "plugin": plugin.get(1, [b""])[0].decode(), "content": plugin.get(2, [b""])[0]})
            events.append(ev)
    return events


def series(logdir, tag):
    """[(step, value)] of a tag over the events of `logdir`."""
    return [(e["step"], e["values"][tag][1]) for e in read_events(logdir) if tag in e["values"]]


# ---- data and models ---------------------------------------------------------------------------------

def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int32)


def _model(lr=0.05):
    m = lamina.Sequential([lamina.Input((4,)), layers.Dense(3, activation="relu", name="hidden"),
                           layers.Dense(2, activation="softmax", name="out")])
    m.compile(optimizer=lamina.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return m


# ---- the format ---------------------------------------------------------------------------------------

def test_crc32c_and_record_framing_match_the_specification():
    from lamina._tensorboard import crc32c, frame, masked_crc32c
    assert crc32c(b"123456789") == 0xE3069283   # the CRC-32C check value
    assert crc32c(b"") == 0
    payload = bytes(range(256)) * 3
    assert crc32c(payload) == _crc32c_bitwise(payload)
    assert masked_crc32c(payload) == _masked(payload)
    record = frame(payload)
    assert len(record) == len(payload) + 16 and record[12:-4] == payload
    corrupt = bytearray(record)
    corrupt[20] ^= 1
    assert struct.unpack("<I", bytes(corrupt[-4:]))[0] != _masked(bytes(corrupt[12:-4]))


def test_histogram_buckets_cover_every_finite_value():
    from lamina._tensorboard import histogram_proto
    x = np.random.default_rng(3).standard_normal(1000)
    h = fields(histogram_proto(x))
    counts, limits = np.frombuffer(h[7][0], "<f8"), np.frombuffer(h[6][0], "<f8")
    assert len(counts) == len(limits) == 30 and counts.sum() == 1000 == _double(h, 3)
    ref, edges = np.histogram(x, bins=30, range=(x.min(), x.max()))
    np.testing.assert_array_equal(counts, ref)
    np.testing.assert_allclose(limits, edges[1:])
    assert _double(h, 1) == x.min() and _double(h, 2) == x.max()
    np.testing.assert_allclose([_double(h, 4), _double(h, 5)], [x.sum(), (x * x).sum()])
    const = fields(histogram_proto(np.full(7, 0.5)))
    assert list(np.frombuffer(const[7][0], "<f8")) == [7.0] and _double(const, 1) == _double(const, 2) == 0.5
    nan = fields(histogram_proto([1.0, np.nan, 2.0, np.inf]))
    assert np.frombuffer(nan[7][0], "<f8").sum() == 2 == _double(nan, 3)


# ---- the callback ---------------------------------------------------------------------------------------

def test_epoch_scalars_equal_the_history(tmp_path):
    x, y = _data()
    m = _model()
    tb = callbacks.TensorBoard(tmp_path)
    h = m.fit(x, y, epochs=3, batch_size=8, validation_data=_data(16, seed=1), callbacks=[tb], verbose=0)
    train, val = read_events(tmp_path / "train"), read_events(tmp_path / "validation")
    assert train[0]["file_version"] == "brain.Event:2" and val[0]["file_version"] == "brain.Event:2"
    assert [e["wall_time"] for e in train] == sorted(e["wall_time"] for e in train)
    for name in ("loss", "accuracy"):
        assert series(tmp_path / "train", f"epoch_{name}") == [(i, np.float32(v)) for i, v in
                                                               enumerate(h.history[name])]
        assert series(tmp_path / "validation", f"epoch_{name}") == [(i, np.float32(v)) for i, v in
                                                                    enumerate(h.history["val_" + name])]
        # after each validation, at the optimizer's iteration count (4 steps an epoch)
        assert series(tmp_path / "validation", f"evaluation_{name}_vs_iterations") == \
            [(4 * (i + 1), np.float32(v)) for i, v in enumerate(h.history["val_" + name])]
    assert series(tmp_path / "train", "epoch_learning_rate") == [(i, np.float32(0.05)) for i in range(3)]
    tags = {t for e in train for t in e["values"]}
    assert not any(t.startswith("batch_") or t.startswith("epoch_val") for t in tags)
    assert "learning_rate" not in h.history   # the callback's additions stay out of the logs
    assert tb._writers == {}                  # closed at the end of training


@pytest.mark.parametrize("update_freq, steps", [("batch", list(range(1, 9))), (3, [3, 6]), ("epoch", [])])
def test_batch_scalars_every_update_freq_batches(tmp_path, update_freq, steps):
    x, y = _data()
    seen = []
    record = callbacks.LambdaCallback(on_train_batch_end=lambda b, logs: seen.append(dict(logs)))
    m = _model()
    m.fit(x, y, epochs=2, batch_size=8, callbacks=[callbacks.TensorBoard(tmp_path, update_freq=update_freq), record],
          verbose=0)
    loss = series(tmp_path / "train", "batch_loss")
    assert [s for s, _ in loss] == steps
    assert [v for _, v in loss] == [np.float32(seen[s - 1]["loss"]) for s in steps]
    assert [v for _, v in series(tmp_path / "train", "batch_accuracy")] == \
        [np.float32(seen[s - 1]["accuracy"]) for s in steps]


def test_steps_per_second(tmp_path):
    x, y = _data()
    _model().fit(x, y, epochs=2, batch_size=8, verbose=0,
                 callbacks=[callbacks.TensorBoard(tmp_path, write_steps_per_second=True, update_freq=2)])
    per_epoch = series(tmp_path / "train", "epoch_steps_per_second")
    per_batch = series(tmp_path / "train", "batch_steps_per_second")
    assert [s for s, _ in per_epoch] == [0, 1] and all(v > 0 for _, v in per_epoch)
    assert [s for s, _ in per_batch] == [2, 4, 6, 8] and all(v > 0 for _, v in per_batch)


def test_weight_histograms_every_histogram_freq_epochs(tmp_path):
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=2)])
    events = read_events(tmp_path / "train")
    paths = [w.path for l in m.layers for w in l.weights]
    assert paths == ["hidden/kernel", "hidden/bias", "out/kernel", "out/bias"]
    for path, w in zip(paths, [w for l in m.layers for w in l.weights]):
        hist = [(e["step"], e["values"][f"{path}/histogram"][1]) for e in events if f"{path}/histogram" in e["values"]]
        assert [s for s, _ in hist] == [0, 2]
        for _, h in hist:
            assert sum(h["bucket"]) == h["num"] == w.numpy().size
        final = hist[-1][1]   # epoch 2 is the last: the weights as they are now
        value = w.numpy().astype(np.float64)
        assert final["min"] == value.min() and final["max"] == value.max()
        np.testing.assert_allclose(final["sum"], value.sum(), rtol=1e-12, atol=1e-12)


def test_histogram_of_non_finite_weights_warns_and_counts_the_finite_ones(tmp_path):
    m = _model()
    kernel = m.get_layer("hidden").kernel
    value = kernel.numpy()
    value[0, 0] = np.nan
    kernel.assign(value)
    tb = callbacks.TensorBoard(tmp_path, histogram_freq=1, write_graph=False)
    tb.set_model(m)
    tb.on_train_begin()
    with pytest.warns(UserWarning, match="'hidden/kernel' holds 1 NaN or infinite"):
        tb.on_epoch_end(0, {"loss": 1.0})
    tb.on_train_end()
    h = [e["values"]["hidden/kernel/histogram"][1] for e in read_events(tmp_path / "train")
         if "hidden/kernel/histogram" in e["values"]][0]
    assert h["num"] == sum(h["bucket"]) == value.size - 1


def test_write_images_draws_the_weights_as_keras(tmp_path):
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=8, verbose=0,
          callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1, write_images=True)])
    values = {t: v for e in read_events(tmp_path / "train") for t, v in e["values"].items()}
    kernel = m.get_layer("hidden").kernel.numpy()           # (4, 3): the longer side across -> 3 x 4
    kind, image = values["hidden/kernel/image"]
    assert kind == "tensor" and image["plugin"] == "images" and image["dtype"] == 7 and image["shape"] == [3]
    width, height, png = image["strings"]
    assert (int(width), int(height)) == (4, 3)
    pixels = _decode_grey_png(png)
    np.testing.assert_array_equal(pixels, np.clip(kernel.T * 255.5, 0, 255).astype(np.uint8))
    assert values["out/bias/image"][1]["strings"][:2] == [b"1", b"2"]   # a bias: 2 rows, 1 column


def _decode_grey_png(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(data):
        (n,) = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + n
    w, h, depth, color = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert depth == 8 and color == 0
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(h, w + 1)
    assert (rows[:, 0] == 0).all()   # no filter
    return rows[:, 1:]


def test_write_graph_writes_the_model_json(tmp_path):
    m = _model()
    callbacks.TensorBoard(tmp_path).set_model(m)
    kind, t = [e["values"]["keras"] for e in read_events(tmp_path / "train") if "keras" in e["values"]][0]
    assert t["plugin"] == "graph_keras_model" and t["content"] == b"1" and t["shape"] == []
    assert json.loads(t["strings"][0]) == json.loads(m.to_json())

    callbacks.TensorBoard(tmp_path / "off", write_graph=False).set_model(m)
    assert not os.path.exists(tmp_path / "off")   # nothing written, no file created

    class Sub(lamina.Model):
        def __init__(self):
            super().__init__()
            self.d = layers.Dense(1)

        def call(self, x):
            return self.d(x)
    callbacks.TensorBoard(tmp_path / "sub").set_model(Sub())
    assert not os.path.exists(tmp_path / "sub")   # as Keras: no graph for a subclassed model


def test_evaluate_writes_evaluation_scalars_and_flushes(tmp_path):
    x, y = _data()
    m = _model()
    m.fit(x, y, epochs=1, batch_size=8, verbose=0)
    tb = callbacks.TensorBoard(tmp_path, write_graph=False)
    logs = m.evaluate(x, y, batch_size=8, verbose=0, callbacks=[tb], return_dict=True)
    assert series(tmp_path / "validation", "evaluation_loss_vs_iterations") == [(4, np.float32(logs["loss"]))]
    assert series(tmp_path / "validation", "evaluation_accuracy_vs_iterations") == \
        [(4, np.float32(logs["accuracy"]))]


def test_each_epoch_is_on_disk_when_the_epoch_ends(tmp_path):
    x, y = _data()
    seen = []
    probe = callbacks.LambdaCallback(on_epoch_end=lambda e, logs: seen.append(
        [s for s, _ in series(tmp_path / "train", "epoch_loss")]))
    _model().fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callbacks.TensorBoard(tmp_path), probe])
    assert seen == [[0], [0, 1], [0, 1, 2]]


def test_a_second_fit_writes_a_new_file(tmp_path):
    x, y = _data()
    m = _model()
    tb = callbacks.TensorBoard(tmp_path, write_graph=False)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tb])
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, callbacks=[tb])
    assert len(glob.glob(str(tmp_path / "train" / "events.out.tfevents.*"))) == 2
    assert [s for s, _ in series(tmp_path / "train", "epoch_loss")] == [0, 0]


def test_logs_that_are_not_numbers_warn_and_are_skipped(tmp_path):
    tb = callbacks.TensorBoard(tmp_path, write_graph=False)
    tb.set_model(_model())
    tb.on_train_begin()
    tb.on_epoch_begin(0)
    with pytest.warns(UserWarning, match=r"log 'f1' is not a single number \(shape \(2,\)\)"):
        tb.on_epoch_end(0, {"loss": 0.5, "f1": np.array([0.1, 0.2])})
    tb.on_train_end()
    values = [e["values"] for e in read_events(tmp_path / "train") if e["values"]][0]
    assert set(values) == {"epoch_loss", "epoch_learning_rate"}


def test_embeddings_as_keras_3(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.integers(0, 10, (16, 5)), rng.integers(0, 2, (16,))
    m = lamina.Sequential([lamina.Input((5,), dtype="int32"), layers.Embedding(10, 4, name="emb"),
                           layers.GlobalAveragePooling1D(), layers.Dense(1, activation="sigmoid")])
    m.compile("sgd", "binary_crossentropy")
    m.fit(x, y, epochs=2, verbose=0, callbacks=[callbacks.TensorBoard(
        tmp_path, embeddings_freq=1, embeddings_metadata={"emb": 'words "1".tsv'})])
    assert (tmp_path / "projector_config.pbtxt").read_text() == (
        'embeddings {\n  tensor_name: "layer_with_weights-0/embeddings/.ATTRIBUTES/VARIABLE_VALUE"\n'
        '  metadata_path: "words \\"1\\".tsv"\n}\n')
    for epoch in (0, 1):
        assert (tmp_path / "train" / f"keras_embedding.ckpt-{epoch}.weights.h5").exists()
    before = m.get_layer("emb").embeddings.numpy()
    m.get_layer("emb").embeddings.assign(np.zeros_like(before))
    m.load_weights(str(tmp_path / "train" / "keras_embedding.ckpt-1.weights.h5"))
    np.testing.assert_array_equal(m.get_layer("emb").embeddings.numpy(), before)
    with pytest.raises(ValueError, match=r"embeddings_metadata names \['nope'\], which are not Embedding layers"):
        callbacks.TensorBoard(tmp_path / "bad", embeddings_freq=1, embeddings_metadata={"nope": "x.tsv"}).set_model(m)


@pytest.mark.parametrize("kwargs, message", [
    ({"profile_batch": 5}, "lamina has no profiler"),
    ({"profile_batch": (2, 4)}, "lamina has no profiler"),
    ({"profile_batch": "1,3"}, "lamina has no profiler"),
    ({"profile_batch": (3, 1)}, "profile_batch must be a non-negative integer or a pair"),
    ({"profile_batch": -1}, "profile_batch must be a non-negative integer or a pair"),
    ({"update_freq": 0}, "update_freq must be 'epoch', 'batch' or an int >= 1"),
    ({"update_freq": "sometimes"}, "update_freq must be 'epoch', 'batch' or an int >= 1"),
    ({"histogram_freq": -1}, "histogram_freq must be an int >= 0"),
    ({"histogram_freq": 1.5}, "histogram_freq must be an int >= 0"),
    ({"embeddings_freq": True}, "embeddings_freq must be an int >= 0"),
    ({"embeddings_metadata": ["a.tsv"]}, "embeddings_metadata must be a file name or a dict"),
])
def test_bad_arguments_raise(tmp_path, kwargs, message):
    with pytest.raises(ValueError, match=message):
        callbacks.TensorBoard(tmp_path, **kwargs)
    assert callbacks.TensorBoard(tmp_path, profile_batch=0).update_freq == "epoch"
    assert callbacks.TensorBoard(tmp_path, profile_batch=(0, 0), update_freq="batch").update_freq == 1


def test_options_that_do_nothing_alone_warn(tmp_path):
    with pytest.warns(UserWarning, match="histogram_freq=0 writes none"):
        callbacks.TensorBoard(tmp_path, write_images=True)
    with pytest.warns(UserWarning, match="embeddings_freq=0 does not write"):
        callbacks.TensorBoard(tmp_path, embeddings_metadata="words.tsv")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callbacks.TensorBoard(tmp_path, write_images=True, histogram_freq=2, embeddings_metadata="w.tsv",
                              embeddings_freq=1)


def test_tensorboard_reads_the_files(tmp_path):
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        pytest.skip("the tensorboard package is not installed; the files are checked by this file's own reader")
    x, y = _data()
    m = _model()
    h = m.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, verbose=0,
              callbacks=[callbacks.TensorBoard(tmp_path, histogram_freq=1, write_images=True)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = EventAccumulator(str(tmp_path / "train"), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        train.Reload()
        val = EventAccumulator(str(tmp_path / "validation"), size_guidance={"scalars": 0})
        val.Reload()
    assert [e.value for e in train.Scalars("epoch_loss")] == [np.float32(v) for v in h.history["loss"]]
    assert [e.value for e in val.Scalars("epoch_loss")] == [np.float32(v) for v in h.history["val_loss"]]
    hist = train.Histograms("hidden/kernel/histogram")[-1].histogram_value
    assert sum(hist.bucket) == hist.num == 12
    assert "keras" in train.Tags()["tensors"] and "hidden/kernel/image" in train.Tags()["tensors"]
