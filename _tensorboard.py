"""TensorBoard event files without TensorFlow: the record framing, the protocol-buffer messages
(Event, Summary, HistogramProto, TensorProto) encoded by hand, and a writer.

An event file is a sequence of records, each
    uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
whose data is a serialized `tensorflow.Event`; the first event holds `file_version: "brain.Event:2"`.
The field numbers below are those of tensorflow/core/util/event.proto and
tensorflow/core/framework/{summary,tensor,tensor_shape}.proto.

Scalars are written as `simple_value` and histograms as `HistogramProto` (the forms TensorBoard's
readers have always accepted; TensorBoard converts both to its current tensor form on load), with
30 equal-width buckets as TensorFlow 2's `tf.summary.histogram`. Images and the Keras model
(its JSON, for the graph plugin) are tensor summaries tagged with their plugin, as TensorFlow 2
writes them.

Unlike lamina's other files these are not written atomically: an event file is a log that grows by
appending records while training runs (TensorBoard reads it as it grows and ignores a record left
incomplete by an interrupted write), as TensorFlow writes it.
"""
import itertools
import os
import socket
import struct
import time
import zlib

import numpy as np

# ---- CRC-32C (Castagnoli), as the record framing needs it --------------------------------------------

def _crc_table():
    table = []
    for i in range(256):
        crc = i
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data, crc=0):
    """CRC-32C of `data` (bytes), continuing from `crc`."""
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    """The CRC as TFRecord stores it: rotated right by 15 bits plus a constant."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def frame(data):
    """One TFRecord record holding `data`."""
    header = struct.pack("<Q", len(data))
    return header + struct.pack("<I", masked_crc32c(header)) + data + struct.pack("<I", masked_crc32c(data))


# ---- protocol-buffer wire format ----------------------------------------------------------------------

def _varint(n):
    if n < 0:
        n += 1 << 64   # int64 fields: two's complement, ten bytes
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _key(field, wire_type):
    return _varint(field << 3 | wire_type)


def _int_field(field, value):
    return _key(field, 0) + _varint(int(value)) if value else b""


def _double_field(field, value):
    return _key(field, 1) + struct.pack("<d", value) if value else b""


def _float_field(field, value):
    return _key(field, 5) + struct.pack("<f", value)


def _bytes_field(field, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return _key(field, 2) + _varint(len(data)) + data


def _packed_doubles(field, values):
    values = np.asarray(values, dtype="<f8")
    return _bytes_field(field, values.tobytes()) if values.size else b""


# ---- messages -----------------------------------------------------------------------------------------

DT_STRING = 7                     # tensorflow.DataType
DATA_CLASS_BLOB_SEQUENCE = 3      # tensorboard SummaryMetadata.data_class
HISTOGRAM_BUCKETS = 30            # tf.summary.histogram's default


def event(wall_time, step=0, file_version=None, summary=None):
    """A serialized `Event` (wall_time=1, step=2, file_version=3, summary=5)."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _int_field(2, step)
    if file_version is not None:
        out += _bytes_field(3, file_version)
    if summary is not None:
        out += _bytes_field(5, summary)
    return out


def summary(values):
    """A serialized `Summary` holding the serialized `Summary.Value`s `values` (field 1)."""
    return b"".join(_bytes_field(1, v) for v in values)


def scalar_value(tag, value):
    """`Summary.Value` with tag=1 and simple_value=2 (a float32)."""
    return _bytes_field(1, tag) + _float_field(2, float(value))


def histogram_proto(values, bucket_count=HISTOGRAM_BUCKETS):
    """A serialized `HistogramProto` of the finite entries of `values`: min=1, max=2, num=3,
    sum=4, sum_squares=5, bucket_limit=6 and bucket=7 (packed doubles). The buckets are
    tf.summary.histogram's: `bucket_count` of equal width from min to max, each holding the values
    from its left edge up to (not including) its right edge, the last one max too; `bucket_limit`
    holds the right edges. A constant tensor has one bucket; an empty one a single empty bucket."""
    x = np.asarray(values, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size == 0:
        return _packed_doubles(6, [0.0]) + _packed_doubles(7, [0.0])
    lo, hi = float(x.min()), float(x.max())
    if hi == lo:
        limits, counts = [hi], [float(x.size)]
    else:
        width = (hi - lo) / bucket_count
        index = np.minimum(np.floor((x - lo) / width).astype(np.int64), bucket_count - 1)
        counts = np.bincount(index, minlength=bucket_count).astype(np.float64)
        limits = np.linspace(lo, hi, bucket_count + 1)[1:]
        limits[-1] = hi
    return (_double_field(1, lo) + _double_field(2, hi) + _double_field(3, float(x.size))
            + _double_field(4, float(x.sum())) + _double_field(5, float(np.dot(x, x)))
            + _packed_doubles(6, limits) + _packed_doubles(7, counts))


def histogram_value(tag, values, bucket_count=HISTOGRAM_BUCKETS):
    """`Summary.Value` with tag=1 and histo=5."""
    return _bytes_field(1, tag) + _bytes_field(5, histogram_proto(values, bucket_count))


def _metadata(plugin_name, content=b"", data_class=None):
    """`SummaryMetadata`: plugin_data=1 (`PluginData`: plugin_name=1, content=2), data_class=4."""
    plugin = _bytes_field(1, plugin_name) + (_bytes_field(2, content) if content else b"")
    return _bytes_field(1, plugin) + _int_field(4, data_class or 0)


def string_tensor_value(tag, strings, plugin_name, content=b"", data_class=None, scalar=False):
    """`Summary.Value` with tag=1, metadata=9 and tensor=8: a DT_STRING `TensorProto` (dtype=1,
    tensor_shape=2, string_val=8) of shape () when `scalar`, else (len(strings),)."""
    shape = b"" if scalar else _bytes_field(2, _int_field(1, len(strings)))   # TensorShapeProto.dim=2, Dim.size=1
    tensor = _int_field(1, DT_STRING) + _bytes_field(2, shape) + b"".join(_bytes_field(8, s) for s in strings)
    return _bytes_field(1, tag) + _bytes_field(9, _metadata(plugin_name, content, data_class)) + _bytes_field(8, tensor)


def image_value(tag, images):
    """The images plugin's tensor summary of `images` (uint8, (k, h, w, c) with c in 1, 3, 4):
    [width, height, png, png, ...] as tf.summary.image writes it."""
    images = np.asarray(images)
    k, h, w = images.shape[:3]
    strings = [str(w).encode(), str(h).encode()] + [png(images[i]) for i in range(k)]
    return string_tensor_value(tag, strings, "images", data_class=DATA_CLASS_BLOB_SEQUENCE)


def png(image):
    """PNG bytes of a uint8 image (h, w, c), c = 1 (grey), 3 (RGB) or 4 (RGBA)."""
    image = np.ascontiguousarray(image, dtype=np.uint8)
    h, w, c = image.shape
    color = {1: 0, 3: 2, 4: 6}.get(c)
    if color is None:
        raise ValueError(f"png: an image needs 1, 3 or 4 channels, received shape {image.shape}")
    rows = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * c)], axis=1)  # filter 0 per row

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", w, h, 8, color, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes()))
            + chunk(b"IEND", b""))


# ---- the writer ---------------------------------------------------------------------------------------

_uid = itertools.count()


class EventFileWriter:
    """Appends events to a new file `events.out.tfevents.<time>.<host>.<pid>.<n>.v2` in `logdir`
    (created if needed), starting with the file-version event. `flush()` makes what was written
    visible to readers; `close()` flushes and closes."""

    def __init__(self, logdir):
        self.logdir = os.fspath(logdir)
        os.makedirs(self.logdir, exist_ok=True)
        host = socket.gethostname() or "localhost"
        while True:
            name = f"events.out.tfevents.{int(time.time()):010d}.{host}.{os.getpid()}.{next(_uid)}.v2"
            self.path = os.path.join(self.logdir, name)
            try:
                self._file = open(self.path, "xb")
                break
            except FileExistsError:
                continue
        self._write(event(time.time(), file_version="brain.Event:2"))

    @property
    def closed(self):
        return self._file is None

    def _write(self, data):
        if self._file is None:
            raise ValueError(f"EventFileWriter: {self.path} is closed; create a new writer to write more events")
        self._file.write(frame(data))

    def add_summary(self, values, step, wall_time=None):
        """Writes one event at `step` holding the serialized `Summary.Value`s `values`."""
        self._write(event(time.time() if wall_time is None else wall_time, step=int(step), summary=summary(values)))

    def flush(self):
        if self._file is not None:
            self._file.flush()

    def close(self):
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
