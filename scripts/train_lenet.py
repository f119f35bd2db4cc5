"""Train the shipped LeNets (MatConvNet's MNIST LeNet and recipe) and write them as MatConvNet files.

    python scripts/train_lenet.py                      # both models, into fastdecode/models/
    python scripts/train_lenet.py --model lenet-fashion --epochs 15

Needs PyTorch (``pip install '.[train]'``), CPU only. The network is MatConvNet's
``cnn_mnist_init`` LeNet without batch normalisation: conv 5x5x1x20, max pool 2, conv 5x5x20x50,
max pool 2, conv 4x4x50x500, ReLU, conv 1x1x500x10, softmax log-loss. The recipe is ``cnn_mnist``'s:
weights 0.01 * randn, biases 0, pixels in 0..255 minus the training mean image, SGD with momentum
0.9, learning rate 0.001, weight decay 0.0005, batches of 100, fixed seeds.

- ``lenet-mnist``: trained on MNIST test images 1-8,000, validated on 8,001-10,000 (the only MNIST
  images available to the project: ``--mnist``, default ``../shared/data/mnist`` beside the project).
- ``lenet-fashion``: trained on Fashion-MNIST's 60,000 training images, validated on its 10,000
  test images (``--fashion``, default Debian's ``/usr/share/datasets/fashion-mnist``).

Each model is trained in torch, converted to fastdecode layers (torch's (out, in, kh, kw) weights
are a correlation like MatConvNet's, so no flip), checked (fastdecode's forward must reproduce
torch's logits to float32 rounding and its validation accuracy) and saved with ``save_matconvnet``.
``--npz PATH`` also keeps the trained weights as .npz; ``--from-npz PATH`` converts such a file
without training.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

PROJECT_ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
MODELS_DIR = os.path.join(PROJECT_ROOT, "fastdecode", "models")

LEARNING_RATE = 0.001
MOMENTUM = 0.9
WEIGHT_DECAY = 0.0005
BATCH_SIZE = 100
INIT_SCALE = 0.01

#: (name, torch layer spec): conv (K, C, h, w), pool size, relu; MatConvNet's cnn_mnist_init.
ARCHITECTURE = [("conv", (20, 1, 5, 5)), ("pool", 2), ("conv", (50, 20, 5, 5)), ("pool", 2),
                ("conv", (500, 50, 4, 4)), ("relu", None), ("conv", (10, 500, 1, 1))]

MODELS = {
    # name: (data set, epochs (cnn_mnist's numEpochs), seed)
    "lenet-mnist": ("mnist", 20, 0),
    "lenet-fashion": ("fashion", 20, 0),
}


def load_data(kind, args):
    """(train images, train labels, val images, val labels, class names) as uint8 arrays."""
    from fastdecode.datasets import FASHION_CLASSES, MNIST_CLASSES, load_directory
    if kind == "mnist":
        test = load_directory(args.mnist, "test")
        return (test.images[:8000], test.labels[:8000], test.images[8000:], test.labels[8000:],
                MNIST_CLASSES)
    train = load_directory(args.fashion, "train")
    test = load_directory(args.fashion, "test")
    return train.images, train.labels, test.images, test.labels, FASHION_CLASSES


def build_torch_net(torch):
    """The LeNet as a torch Sequential, initialised as MatConvNet does (0.01 * randn, zero bias)."""
    nn = torch.nn
    layers = []
    for kind, spec in ARCHITECTURE:
        if kind == "conv":
            K, C, h, w = spec
            conv = nn.Conv2d(C, K, (h, w))
            with torch.no_grad():
                conv.weight.copy_(INIT_SCALE * torch.randn(K, C, h, w))
                conv.bias.zero_()
            layers.append(conv)
        elif kind == "pool":
            layers.append(nn.MaxPool2d(spec, stride=spec))
        else:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_logits(torch, model, x, batch=1000):
    """Logits (N, 10) float32 of preprocessed images x (N, 1, 28, 28) float32."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            out.append(model(torch.from_numpy(x[i:i + batch])).reshape(-1, 10).numpy())
    return np.concatenate(out)


def train(name, args):
    """Train one model; returns a dict of numpy arrays and facts (the .npz content)."""
    import torch
    torch.set_num_threads(args.threads)
    kind, default_epochs, seed = MODELS[name]
    epochs = args.epochs or default_epochs
    x_train, y_train, x_val, y_val, classes = load_data(kind, args)
    mean = x_train.astype(np.float64).mean(axis=0).astype(np.float32)[None]   # (1, 28, 28)
    xt = (x_train[:, None].astype(np.float32) - mean)
    xv = (x_val[:, None].astype(np.float32) - mean)
    yt = torch.from_numpy(y_train.astype(np.int64))

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = build_torch_net(torch)
    optimiser = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE, momentum=MOMENTUM,
                                weight_decay=WEIGHT_DECAY)
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    print("%s: %d training images, %d validation images, %d epochs" % (name, len(xt), len(xv),
                                                                        epochs), flush=True)
    for epoch in range(1, epochs + 1):
        start = time.time()
        model.train()
        order = rng.permutation(len(xt))
        total, correct = 0.0, 0
        for i in range(0, len(order), BATCH_SIZE):
            idx = order[i:i + BATCH_SIZE]
            xb = torch.from_numpy(xt[idx])
            yb = yt[idx]
            optimiser.zero_grad()
            logits = model(xb).reshape(len(idx), 10)
            loss = loss_fn(logits, yb)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        val_pred = torch_logits(torch, model, xv).argmax(1)
        val_acc = float((val_pred == y_val).mean())
        history.append((epoch, total / len(xt), correct / len(xt), val_acc))
        print("%s epoch %2d: train loss %.4f, train accuracy %.4f, validation accuracy %.4f "
              "(%.0f s)" % (name, epoch, total / len(xt), correct / len(xt), val_acc,
                            time.time() - start), flush=True)

    convs = [m for m in model if isinstance(m, torch.nn.Conv2d)]
    result = {"name": name, "classes": np.array(classes), "mean": mean,
              "history": np.array(history), "epochs": epochs, "seed": seed,
              "val_logits": torch_logits(torch, model, xv), "val_labels": y_val,
              "n_train": len(xt)}
    for i, conv in enumerate(convs):
        result["w%d" % i] = conv.weight.detach().numpy().astype(np.float32)
        result["b%d" % i] = conv.bias.detach().numpy().astype(np.float32)
    return result


def to_network(trained):
    """The trained weights as a fastdecode Network with MatConvNet's meta."""
    import fastdecode as fd
    layers, k = [], 0
    for kind, spec in ARCHITECTURE:
        if kind == "conv":
            layers.append(fd.Conv(trained["w%d" % k], trained["b%d" % k]))
            k += 1
        elif kind == "pool":
            layers.append(fd.Pool("max", size=spec, stride=spec))
        else:
            layers.append(fd.ReLU())
    classes = [str(c) for c in trained["classes"]]
    meta = {
        "inputSize": [28, 28, 1],
        "normalization": {"averageImage": np.asarray(trained["mean"], dtype=np.float32),
                          "imageSize": [28, 28, 1]},
        "classes": {"name": classes, "description": classes},
        "trainOpts": {"learningRate": LEARNING_RATE, "momentum": MOMENTUM,
                      "weightDecay": WEIGHT_DECAY, "batchSize": BATCH_SIZE,
                      "numEpochs": int(trained["epochs"]), "seed": int(trained["seed"])},
        "losses": [{"name": "layer8", "type": "softmaxloss"}],
    }
    return fd.Network(layers, meta=meta)


def check_network(net, trained, x_val):
    """fastdecode's forward on the validation images against torch's logits and accuracy."""
    from fastdecode.models import preprocess
    logits = net.forward(preprocess(net, x_val)).reshape(len(x_val), -1)
    ref = trained["val_logits"]
    scale = float(np.abs(ref).max())
    err = float(np.abs(logits - ref).max())
    acc_fd = float((logits.argmax(1) == trained["val_labels"]).mean())
    acc_torch = float((ref.argmax(1) == trained["val_labels"]).mean())
    print("%s: fastdecode vs torch logits: max abs difference %.2e (logits up to %.1f); "
          "validation accuracy fastdecode %.4f, torch %.4f"
          % (trained["name"], err, scale, acc_fd, acc_torch), flush=True)
    if err > 1e-4 * max(scale, 1.0) or abs(acc_fd - acc_torch) > 1.5 / len(x_val):
        raise SystemExit("%s: fastdecode's forward does not reproduce torch's" % trained["name"])
    return acc_fd


def export(trained, args):
    """Convert, check and save one trained model; returns its validation accuracy."""
    from fastdecode import save_matconvnet
    from fastdecode.models import load
    name = str(trained["name"])
    net = to_network(trained)
    kind = MODELS[name][0]
    x_val = load_data(kind, args)[2]
    acc = check_network(net, trained, x_val)
    path = os.path.join(args.out, name + ".mat")
    save_matconvnet(net, path)
    if os.path.abspath(args.out) == os.path.abspath(MODELS_DIR):
        check_network(load(name), trained, x_val)   # the shipped file, read back
    print("wrote %s" % path, flush=True)
    return acc


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS) + ["all"], default="all")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs (default: %s)" % ", ".join("%s %d" % (n, MODELS[n][1])
                                                                for n in sorted(MODELS)))
    parser.add_argument("--mnist", default=os.path.join(PROJECT_ROOT, os.pardir, "shared", "data",
                                                        "mnist"))
    parser.add_argument("--fashion", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=MODELS_DIR, help="directory for the .mat files")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--npz", default=None, help="also save the trained weights here (.npz)")
    parser.add_argument("--from-npz", default=None, help="convert saved weights, no training")
    parser.add_argument("--no-export", action="store_true", help="train only (with --npz)")
    args = parser.parse_args(argv)

    if args.from_npz:
        with np.load(args.from_npz) as f:
            trained = {k: f[k] for k in f.files}
        trained["name"] = str(trained["name"])
        runs = [trained]
    else:
        names = sorted(MODELS) if args.model == "all" else [args.model]
        if args.npz and len(names) > 1:
            parser.error("--npz needs a single --model")
        runs = []
        for name in names:
            trained = train(name, args)
            if args.npz:
                np.savez(args.npz, **trained)
                print("wrote %s" % args.npz, flush=True)
            runs.append(trained)
    if args.no_export:
        return 0
    summary = {}
    for trained in runs:
        summary[str(trained["name"])] = export(trained, args)
    print(json.dumps({"validation_accuracy": summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
