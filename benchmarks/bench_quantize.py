"""int8 inference (issue 14): the int8 GEMM against lamina's float32 GEMM, and `predict` of the
MNIST convnet and of MobileNet (alpha 0.25) before and after `model.quantize("int8")`, with
their accuracy and file sizes.

  gemm       qmatmul (int8 x int8 -> int32, activations quantized per row on the fly)
             vs sgemm, same shapes, same process, alternating calls; 1 and 2 threads
  mnist      Deep MNIST for Experts convnet trained 1 epoch on the real MNIST training set
             (../shared/data/mnist), then test-set accuracy and predict time (10000 images,
             batch 500), float32 vs int8
  mobilenet  MobileNet alpha 0.25 with the real ImageNet weights
             (../shared/data/pretrained), a softmax head trained on the flower photos
             (../shared/data/flower_photos_small, 80/20 split, seed 1); validation accuracy,
             agreement of the float and int8 predictions over all 300 photos, predict time
             (64 images at 224x224, batch 32); .keras file sizes (without the optimizer).
             Then 5-fold cross-validation over all 300 photos (a head trained on the float
             features of 240, tested on the other 60, float and quantized): 300 held-out
             predictions each, a steadier accuracy figure than 60 photos (one photo = 1.7 points)

Needs LAMINA_DATA_DIR (default ../shared/data beside the checkout) for mnist and mobilenet.

    PYTHONPATH=.dev python benchmarks/bench_quantize.py [--sections gemm,mnist,mobilenet] [--repeats 7]
        [--kernel vnni|avxvnni|avx2|generic]
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np


HERE = os.path.dirname(os.path.abspath(__file__))


def data_dir():
    d = os.environ.get("LAMINA_DATA_DIR") or os.path.join(HERE, "..", "..", "shared", "data")
    return os.path.abspath(d)


def gemm(args):
    import lamina
    from lamina.backend import _cpu, linalg
    rng = np.random.default_rng(0)
    print(f"int8 GEMM (qmatmul, kernel '{_cpu.qgemm_kernel()}') vs lamina float32 sgemm (kernel "
          f"'{_cpu.gemm_kernel()}'), ms, median of {args.repeats}; GOPS = 2MNK / time")
    print(f"{'M x K x N':<20} {'threads':>7} {'float32':>9} {'int8':>9} {'speedup':>8} {'int8 GOPS':>10}")
    for M, K, N in ((1024, 1024, 1024), (2048, 2048, 2048), (128, 3136, 1024), (64, 784, 1024), (1, 1024, 1024)):
        w = rng.integers(-127, 128, (K, N)).astype(np.int8)
        packed, colsum = _cpu.Buffer(_cpu.qgemm_packed_bytes(K, N), 4), _cpu.Buffer(N, 1)
        _cpu.qgemm_pack(_cpu.from_numpy(w), K, N, packed, colsum)
        x = rng.standard_normal((M, K)).astype(np.float32)
        xb, ws, out = _cpu.from_numpy(x), _cpu.from_numpy(np.ones(N, np.float32)), _cpu.Buffer(M * N, 0)
        X = lamina.convert_to_tensor(x)
        W = lamina.convert_to_tensor(rng.standard_normal((K, N)).astype(np.float32))
        for t in (1, 2):
            lamina.config.set_num_threads(t)
            fq = lambda: _cpu.qmatmul(xb, M, K, N, packed, colsum, ws, None, out)  # noqa: E731
            ff = lambda: linalg._mm(X, W)  # noqa: E731
            tq, tf = [], []
            for _ in range(2):
                fq(), ff()
            for _ in range(args.repeats):  # alternating
                t0 = time.perf_counter(); fq(); tq.append(time.perf_counter() - t0)
                t0 = time.perf_counter(); ff(); tf.append(time.perf_counter() - t0)
            q, f = statistics.median(tq), statistics.median(tf)
            print(f"{f'{M} x {K} x {N}':<20} {t:>7} {f * 1e3:>9.3f} {q * 1e3:>9.3f} {f / q:>7.2f}x "
                  f"{2 * M * K * N / q / 1e9:>10.0f}")
    print()


def _time_both(float_model, int8_model, x, batch, repeats):
    """Medians (ms) of predict on the float32 and the quantized model, timed alternately in this
    process (a machine's speed drifts by 10-15% between runs: alternating shares the drift)."""
    fns = [lambda m=m: m.predict(x, batch_size=batch, verbose=0) for m in (float_model, int8_model)]
    for _ in range(2):
        for f in fns:
            f()
    times = [[], []]
    for _ in range(repeats):
        for i, f in enumerate(fns):
            t0 = time.perf_counter()
            f()
            times[i].append(time.perf_counter() - t0)
    return statistics.median(times[0]) * 1e3, statistics.median(times[1]) * 1e3


def mnist(args):
    import lamina
    from lamina import layers
    (xt, yt), (xs, ys) = lamina.datasets.mnist.load_data(os.path.join(data_dir(), "mnist"))
    xt = (xt.astype(np.float32) / 255.0)[..., None]
    xs = (xs.astype(np.float32) / 255.0)[..., None]
    lamina.utils.set_random_seed(0)
    model = lamina.Sequential([lamina.Input((28, 28, 1)), layers.Conv2D(32, 5, padding="same", activation="relu"),
                               layers.MaxPooling2D(2), layers.Conv2D(64, 5, padding="same", activation="relu"),
                               layers.MaxPooling2D(2), layers.Flatten(), layers.Dense(1024, activation="relu"),
                               layers.Dropout(0.5), layers.Dense(10)])
    model.compile(optimizer=lamina.optimizers.Adam(1e-3),
                  loss=lamina.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    model.fit(xt, yt.astype(np.int64), batch_size=128, epochs=1, verbose=0)
    acc_f = float(np.mean(model.predict(xs, batch_size=500, verbose=0).argmax(1) == ys))
    with tempfile.TemporaryDirectory() as d:
        model.save(os.path.join(d, "f.keras"), include_optimizer=False)
        model.quantize("int8")
        model.save(os.path.join(d, "q.keras"), include_optimizer=False)
        sizes = [os.path.getsize(os.path.join(d, n)) for n in ("f.keras", "q.keras")]
        float_model = lamina.models.load_model(os.path.join(d, "f.keras"))
    pred_q = model.predict(xs, batch_size=500, verbose=0).argmax(1)
    acc_q = float(np.mean(pred_q == ys))
    tf, tq = _time_both(float_model, model, xs, 500, args.repeats)
    print(f"MNIST convnet, 10000 test images (batch 500): float32 {acc_f * 100:.2f}% in {tf:.0f} ms, int8 "
          f"{acc_q * 100:.2f}% in {tq:.0f} ms: predict {tf / tq:.2f}x, accuracy {100 * (acc_q - acc_f):+.2f} "
          f"points; model file (.keras, no optimizer) {sizes[0] / 1e6:.2f} MB -> {sizes[1] / 1e6:.2f} MB "
          f"({sizes[0] / sizes[1]:.2f}x)\n")


def mobilenet(args):
    import lamina
    from lamina import layers
    root = data_dir()
    lamina.utils.set_random_seed(1)
    train, val = lamina.utils.image_dataset_from_directory(
        os.path.join(root, "flower_photos_small"), validation_split=0.2, subset="both", seed=1,
        image_size=(224, 224), batch_size=32)
    every = lamina.utils.image_dataset_from_directory(os.path.join(root, "flower_photos_small"), image_size=(224, 224),
                                                      batch_size=32, shuffle=False)
    base = lamina.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                         weights=os.path.join(root, "pretrained", "mobilenet_2_5_224_tf_no_top.h5"))
    base.trainable = False
    inputs = lamina.Input((224, 224, 3))
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = base(x, training=False)
    features = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(train.class_names), activation="softmax")(features)
    model = lamina.Model(inputs, outputs)
    extractor = lamina.Model(inputs, features)  # the same layers: quantized with the model
    model.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train, epochs=args.mobilenet_epochs, verbose=0)

    def arrays(ds):
        xs, ys = zip(*[(np.asarray(b[0]), np.asarray(b[1])) for b in ds])
        return np.concatenate(xs), np.concatenate(ys)
    xv, yv = arrays(val)
    xa, _ = arrays(every)
    acc_f = float(np.mean(model.predict(xv, verbose=0).argmax(1) == yv))
    pa_f = model.predict(xa, verbose=0).argmax(1)
    ya = np.concatenate([np.asarray(b[1]) for b in every])
    feats_f = extractor.predict(xa, verbose=0)
    x64 = xa[:64]
    with tempfile.TemporaryDirectory() as d:
        model.save(os.path.join(d, "f.keras"), include_optimizer=False)
        model.quantize("int8")
        model.save(os.path.join(d, "q.keras"), include_optimizer=False)
        sizes = [os.path.getsize(os.path.join(d, n)) for n in ("f.keras", "q.keras")]
        float_model = lamina.models.load_model(os.path.join(d, "f.keras"))
    acc_q = float(np.mean(model.predict(xv, verbose=0).argmax(1) == yv))
    agree = float(np.mean(model.predict(xa, verbose=0).argmax(1) == pa_f))
    tf, tq = _time_both(float_model, model, x64, 32, args.repeats)
    feats_q = extractor.predict(xa, verbose=0)
    cv_f, cv_q = _cross_validated(feats_f, feats_q, ya, len(train.class_names), args.mobilenet_epochs)
    print(f"MobileNet 0.25 + flower head ({len(xv)} validation photos): float32 {acc_f * 100:.1f}%, int8 "
          f"{acc_q * 100:.1f}% ({100 * (acc_q - acc_f):+.1f} points); int8 and float32 agree on {agree * 100:.1f}% "
          f"of all {len(xa)} photos; predict 64 images {tf:.0f} ms -> {tq:.0f} ms ({tf / tq:.2f}x); model file "
          f"(.keras, no optimizer) "
          f"{sizes[0] / 1e6:.2f} MB -> {sizes[1] / 1e6:.2f} MB ({sizes[0] / sizes[1]:.2f}x)")
    print(f"5-fold cross-validation, {len(ya)} held-out photos: float32 {np.mean(cv_f == ya) * 100:.2f}%, int8 "
          f"{np.mean(cv_q == ya) * 100:.2f}% ({100 * (np.mean(cv_q == ya) - np.mean(cv_f == ya)):+.2f} points); "
          f"the two agree on {np.mean(cv_f == cv_q) * 100:.1f}%\n")


def _cross_validated(feats_f, feats_q, y, classes, epochs, folds=5):
    """Held-out predictions of a softmax head per fold: trained on the float features of the
    other folds, applied to the fold's float features (float) and, quantized, to its int8
    features (the quantized model's)."""
    import lamina
    from lamina import layers
    order = np.random.default_rng(0).permutation(len(y))
    pred_f, pred_q = np.empty(len(y), np.int64), np.empty(len(y), np.int64)
    for k in range(folds):
        test = order[k * len(y) // folds:(k + 1) * len(y) // folds]
        fit = np.setdiff1d(order, test)
        lamina.utils.set_random_seed(k)
        head = lamina.Sequential([lamina.Input((feats_f.shape[1],)), layers.Dense(classes, activation="softmax")])
        head.compile(optimizer=lamina.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        head.fit(feats_f[fit], y[fit], batch_size=32, epochs=epochs, verbose=0)
        pred_f[test] = head.predict(feats_f[test], verbose=0).argmax(1)
        head.quantize("int8")
        pred_q[test] = head.predict(feats_q[test], verbose=0).argmax(1)
    return pred_f, pred_q


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sections", default="gemm,mnist,mobilenet")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--mobilenet-epochs", type=int, default=60)
    p.add_argument("--kernel", choices=["vnni", "avxvnni", "avx2", "generic"],
                   help="int8 micro-kernel (default: the best this CPU has); with avxvnni or avx2 the float32 "
                        "GEMM and the other vector kernels (convolutions, ...) run their AVX2 code too, as on a "
                        "CPU without AVX-512")
    args = p.parse_args()
    import lamina
    from lamina.backend import _cpu
    if args.kernel:
        _cpu.set_qgemm_kernel(args.kernel)
        if args.kernel in ("avx2", "avxvnni"):
            _cpu.set_gemm_kernel("avx2")
            _cpu.set_simd_isa("avx2")
    print(f"threads: LAMINA_NUM_THREADS={os.environ.get('LAMINA_NUM_THREADS', '(all cores)')}, "
          f"{lamina.config.get_num_threads()} in use\n")
    for s in args.sections.split(","):
        {"gemm": gemm, "mnist": mnist, "mobilenet": mobilenet}[s](args)


if __name__ == "__main__":
    main()
