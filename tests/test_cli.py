"""The ``fastdecode`` command end to end: a tiny model saved to a MatConvNet file, IDX data
written here, the shipped models when present; error paths leave one line and no files."""

import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from importlib import resources

import numpy as np
import pytest

import fastdecode as fd
from fastdecode import datasets, models
from fastdecode import paper
from fastdecode.cli import main


def tiny_lenet(seed=0):
    """MatConvNet's MNIST LeNet with fewer filters: 28x28 input, 10 outputs, a mean image."""
    rng = np.random.default_rng(seed)
    r = lambda *s: (0.1 * rng.standard_normal(s)).astype(np.float32)  # noqa: E731
    mean = rng.uniform(20, 60, (1, 28, 28)).astype(np.float32)
    return fd.Network(
        [fd.Conv(r(4, 1, 5, 5), r(4)), fd.Pool("max", size=2),
         fd.Conv(r(6, 4, 5, 5), r(6)), fd.Pool("max", size=2),
         fd.Conv(r(8, 6, 4, 4), r(8)), fd.ReLU(), fd.Conv(r(10, 8, 1, 1), r(10))],
        meta={"normalization": {"averageImage": mean},
              "classes": {"name": ["c%d" % i for i in range(10)]}})


def write_idx(directory, images, labels, prefix="t10k"):
    os.makedirs(directory, exist_ok=True)
    with gzip.open(os.path.join(directory, "%s-images-idx3-ubyte.gz" % prefix), "wb") as f:
        f.write(struct.pack(">IIII", 2051, *images.shape) + images.tobytes())
    with open(os.path.join(directory, "%s-labels-idx1-ubyte" % prefix), "wb") as f:
        f.write(struct.pack(">II", 2049, len(labels)) + labels.tobytes())


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    net = tiny_lenet()
    fd.save_matconvnet(net, str(root / "tiny.mat"))
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (40, 28, 28)).astype(np.uint8)
    labels = rng.integers(0, 10, 40).astype(np.uint8)
    write_idx(root / "data", images, labels)
    return {"root": root, "model": str(root / "tiny.mat"), "data": str(root / "data"),
            "images": images, "labels": labels}


def run(argv, capsys):
    try:
        code = main([str(a) for a in argv])
    except SystemExit as exc:  # usage errors, from argparse
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


# --- success paths ----------------------------------------------------------------------------

def test_info(workspace, capsys):
    code, out, err = run(["info", workspace["model"]], capsys)
    assert code == 0 and err == ""
    assert "layer5" in out and "4x4x6x8" in out


def test_decode_writes_grid_and_array(workspace, tmp_path, capsys):
    code, out, err = run(["decode", workspace["model"], "--layer", "layer5", "--filters", "0,2-4",
                          "--unpool", "bilinear", "--threshold", "0.5",
                          "--out", tmp_path / "grid.png", "--save", tmp_path / "d.npy"], capsys)
    assert code == 0, err
    assert "decoded 4 filters of layer layer5" in out
    net = fd.load_matconvnet(workspace["model"])
    expect = fd.decode(net, "layer5", filters=[0, 2, 3, 4], unpool="bilinear")
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), expect)
    with open(tmp_path / "grid.png", "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    assert listing(tmp_path) == ["d.npy", "grid.png"]


def test_decode_layer_by_index(workspace, tmp_path, capsys):
    code, out, _ = run(["decode", workspace["model"], "--layer", "2", "--save",
                        tmp_path / "d.npy"], capsys)
    assert code == 0 and "layer3" in out
    assert np.load(tmp_path / "d.npy").shape == (6, 1, 14, 14)


def evaluate_expected(workspace, start, stop):
    net = fd.load_matconvnet(workspace["model"])
    x = models.preprocess(net, workspace["images"][start:stop])
    return net, x, fd.table1(net, x, progress=False)


def test_evaluate_prints_table1_and_writes_results(workspace, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code, out, err = run(["evaluate", workspace["model"], "--data", workspace["data"],
                          "--start", 5, "--limit", 20, "--out", out_dir, "--no-progress"],
                         capsys)
    assert code == 0, err
    net, x, table = evaluate_expected(workspace, 5, 25)
    for (layer, method), r in table.items():
        assert "%.4f +- %.4f" % (r.mean, r.std) in out
    assert "L3 0.002" in out and "L7 0.078" in out
    results = json.loads((out_dir / "results.json").read_text())
    assert results["images"] == 20 and results["first_image"] == 6
    assert results["table1"]["layer5/bicubic"]["mean"] == pytest.approx(
        table[("layer5", "bicubic")].mean)
    s = fd.filter_scores(net, x, progress=False)
    acc = fd.classifier_accuracy(s, workspace["labels"][5:25].astype(int))
    assert results["classifier"]["decoded"] == pytest.approx(acc.decoded)
    assert results["classifier"]["network"] == pytest.approx(acc.network)
    sc = fd.self_consistency(net)
    assert results["self_consistency"]["fraction"] == pytest.approx(sc.fraction)
    assert "Self-consistency" in out and "Figure 1, classifier" in out
    assert listing(out_dir) == ["fig1_max_activations.png", "fig4cd_top_images_layer5.png",
                                "fig4cd_top_images_layer7.png", "results.json", "results.txt"]


def test_evaluate_with_mean_and_std_scales_pixels_first(workspace, tmp_path, capsys):
    out_dir = tmp_path / "eval"
    code, out, err = run(["evaluate", workspace["model"], "--data", workspace["data"],
                          "--limit", 12, "--unpool", "nearest", "--mean", "0.5", "--std", "0.25",
                          "--out", out_dir, "--no-progress"], capsys)
    assert code == 0, err
    net = fd.load_matconvnet(workspace["model"])
    x = ((workspace["images"][:12, None] / 255.0 - 0.5) / 0.25).astype(net.dtype)
    expect = fd.table1(net, x, methods=("nearest",), progress=False)
    results = json.loads((out_dir / "results.json").read_text())
    for (layer, method), r in expect.items():
        assert results["table1"]["%s/%s" % (layer, method)]["mean"] == pytest.approx(r.mean)


def test_decode_a_graph_layer_that_is_not_a_conv(shared_data, tmp_path, capsys):
    path = shared_data / "matconvnet" / "dncnn-dagnn-epoch50-v73.mat"
    if not path.is_file():
        pytest.skip("no DagNN fixture")
    pytest.importorskip("h5py")
    net = fd.load(path)
    last = [l.name for l in net.layers if isinstance(l, fd.Add)][-1]
    code, out, err = run(["decode", path, "--layer", last, "--save", tmp_path / "d.npy"], capsys)
    assert code == 0, err
    assert "decoded 1 filters of layer %s" % last in out
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), fd.decode(net, last))


def test_nested_out_directories_are_created(workspace, tmp_path, capsys):
    out_dir = tmp_path / "results" / "tiny"
    code, _, err = run(["evaluate", workspace["model"], "--data", workspace["data"], "--limit",
                        10, "--unpool", "nearest", "--out", out_dir, "--no-progress"], capsys)
    assert code == 0, err
    assert "results.json" in os.listdir(out_dir)


def test_evaluate_one_method_without_out(workspace, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["evaluate", workspace["model"], "--data", workspace["data"],
                          "--unpool", "adjoint", "--bias", "--no-progress"], capsys)
    assert code == 0, err
    assert "adjoint" in out and "bicubic" not in out
    assert os.listdir(tmp_path) == []


def test_demo_writes_every_figure(workspace, tmp_path, capsys):
    out_dir = tmp_path / "demo"
    code, out, err = run(["demo", "--model", workspace["model"], "--data", workspace["data"],
                          "--out", out_dir, "--limit", 30, "--no-progress"], capsys)
    assert code == 0, err
    assert "Table 1" in out and "wrote" in out
    assert listing(out_dir) == sorted(
        ["fig1_max_activations.png", "fig3_responses.png", "fig4cd_top_images_layer5.png",
         "fig4cd_top_images_layer7.png", "results.json", "results.txt"] + ["fig4_layer%d.png" % i for i in (1, 3, 5, 7)])
    for name in os.listdir(out_dir):
        if name.endswith(".png"):
            with open(out_dir / name, "rb") as f:
                assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_console_script_entry_point(workspace, tmp_path):
    exe = shutil.which("fastdecode")
    cmd = [exe] if exe else [sys.executable, "-m", "fastdecode"]
    done = subprocess.run(cmd + ["--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and fd.__version__ in done.stdout
    done = subprocess.run(cmd + ["decode", str(tmp_path / "none.mat"), "--layer", "layer1"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert "none.mat" in done.stderr


# --- error paths: one line, non-zero exit, no files ---------------------------------------------

def corrupt_files(root):
    bad = root / "bad"
    if not bad.exists():
        bad.mkdir()
        (bad / "garbage.mat").write_bytes(b"MATLAB 5.0 MAT-file" + bytes(range(256)) * 3)
        write_idx(bad / "truncated", np.zeros((5, 28, 28), np.uint8), np.zeros(5, np.uint8))
        path = bad / "truncated" / "t10k-images-idx3-ubyte.gz"
        data = gzip.decompress(path.read_bytes())[:-100]
        path.write_bytes(gzip.compress(data))
        write_idx(bad / "wrongsize", np.zeros((5, 20, 20), np.uint8), np.zeros(5, np.uint8))
        (bad / "a-file").write_text("not a directory")
        fd.save_matconvnet(fd.Network([fd.Pool("avg", size=2)], input_channels=1),
                           str(bad / "noconv.mat"))
    return bad


ERRORS = {
    "missing model file": (["decode", "{root}/nope.mat", "--layer", "layer1"], "nope.mat"),
    "unknown shipped model": (["evaluate", "lenet-cifar", "--data", "{data}"], "lenet-cifar"),
    "unreadable model": (["info", "{bad}/garbage.mat"], "garbage.mat"),
    "unknown layer": (["decode", "{model}", "--layer", "conv9"], "conv9"),
    "not a conv layer": (["decode", "{model}", "--layer", "layer2"], "layer2"),
    "filter out of range": (["decode", "{model}", "--layer", "layer1", "--filters", "2-9"],
                            "out of range"),
    "huge filter range": (["decode", "{model}", "--layer", "layer1", "--filters",
                           "0-100000000000000"], "filter index 100000000000000 out of range"),
    "bad filter list": (["decode", "{model}", "--layer", "layer1", "--filters", "a-b"],
                        "--filters"),
    "bad unpool": (["decode", "{model}", "--layer", "layer3", "--unpool", "linear"], "linear"),
    "missing data dir": (["evaluate", "{model}", "--data", "{root}/nodata"], "nodata"),
    "data is a file": (["evaluate", "{model}", "--data", "{model}"], "is a file"),
    "model is a directory": (["info", "{root}"], "is a directory"),
    "empty --out": (["demo", "--model", "{model}", "--data", "{data}", "--out", ""],
                    "--out must name a directory"),
    "empty --save": (["decode", "{model}", "--layer", "layer1", "--save", ""],
                     "--save must name a file"),
    "model is a device": (["info", os.devnull], "not a regular file"),
    "model without conv layers": (["evaluate", "{bad}/noconv.mat", "--data", "{data}"],
                                  "no conv layers"),
    "truncated data": (["evaluate", "{model}", "--data", "{bad}/truncated"], "truncated"),
    "images of the wrong size": (["demo", "--model", "{model}", "--data", "{bad}/wrongsize"],
                                 "shape"),
    "start beyond the data": (["evaluate", "{model}", "--data", "{data}", "--start", "99"],
                              "--start"),
    "out is a file": (["demo", "--model", "{model}", "--data", "{data}", "--out",
                       "{bad}/a-file"], "a-file"),
    "out under a file": (["evaluate", "{model}", "--data", "{data}", "--out",
                          "{bad}/a-file/results"], "a-file"),
    "--size for a MatConvNet file": (["info", "{model}", "--size", "28,28"],
                                     "--size sets the input size of an ONNX model"),
    "--size for a shipped model": (["decode", "lenet-mnist", "--layer", "layer1", "--size",
                                    "28,28"], "is a shipped model"),
    "bad --size": (["info", "{model}", "--size", "28"], "--size takes H,W"),
    "bad --mean": (["evaluate", "{model}", "--data", "{data}", "--mean", "a"],
                   "--mean takes comma-separated numbers"),
    "negative --std": (["evaluate", "{model}", "--data", "{data}", "--std", "-1"],
                       "std must be positive"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors_are_one_line_with_no_output_files(case, workspace, tmp_path, capsys,
                                                  monkeypatch):
    bad = corrupt_files(workspace["root"])
    argv, needle = ERRORS[case]
    argv = [a.format(root=workspace["root"], model=workspace["model"], data=workspace["data"],
                     bad=bad) for a in argv]
    if argv[0] == "decode" and "--save" not in argv:
        argv += ["--out", str(tmp_path / "grid.png"), "--save", str(tmp_path / "d.npy")]
    elif argv[0] != "info" and "--out" not in argv:
        argv += ["--out", str(tmp_path / "out")]
    monkeypatch.chdir(tmp_path)
    code, out, err = run(argv, capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("fastdecode")
    assert "Traceback" not in err
    assert needle in err
    assert os.listdir(tmp_path) == []


def test_decode_output_directory_missing_leaves_no_array(workspace, tmp_path, capsys):
    code, _, err = run(["decode", workspace["model"], "--layer", "layer1",
                        "--save", tmp_path / "d.npy", "--out", tmp_path / "no" / "g.png"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert os.listdir(tmp_path) == []


def test_decode_failing_figure_leaves_no_array(workspace, tmp_path, capsys, monkeypatch):
    from fastdecode import plotting

    def broken(*args, **kwargs):
        raise MemoryError("no room for the figure")

    monkeypatch.setattr(plotting, "save_filter_grid", broken)
    code, _, err = run(["decode", workspace["model"], "--layer", "layer1",
                        "--save", tmp_path / "d.npy", "--out", tmp_path / "g.png"], capsys)
    assert code == 2 and "no room" in err
    assert os.listdir(tmp_path) == []


# --- the shipped models -------------------------------------------------------------------------

def shipped(name):
    path = resources.files("fastdecode.models") / (name + ".mat")
    if not path.is_file():
        pytest.skip("shipped model %s not built" % name)
    return name


def test_demo_on_the_shipped_default(tmp_path, capsys, monkeypatch):
    shipped("lenet-fashion")
    monkeypatch.chdir(tmp_path)
    code, out, err = run(["demo", "--limit", 200, "--no-progress"], capsys)
    assert code == 0, err
    assert "lenet-fashion" in out and "Fashion-MNIST" in out
    assert "L3 0.002" in out
    assert "fig4_layer5.png" in os.listdir(tmp_path / "fastdecode-demo")
    acc = json.loads((tmp_path / "fastdecode-demo" / "results.json").read_text())["classifier"]
    assert acc["network"] > 0.75  # about 0.9 on Fashion-MNIST


def test_evaluate_shipped_mnist_on_real_digits(shared_data, capsys):
    shipped("lenet-mnist")
    code, out, err = run(["evaluate", "lenet-mnist", "--data", shared_data / "mnist",
                          "--start", 8000, "--limit", 300, "--unpool", "nearest",
                          "--no-progress"], capsys)
    assert code == 0, err
    assert "images 8001-8300" in out
    net = models.load("lenet-mnist")
    ds = datasets.load_directory(shared_data / "mnist")
    x = models.preprocess(net, ds.images[8000:8300])
    r = fd.reconstruction_error(net, x, "layer3", progress=False)
    assert "%.4f +- %.4f" % (r.mean, r.std) in out
    acc = fd.classifier_accuracy(fd.filter_scores(net, x, progress=False),
                                 ds.labels[8000:8300].astype(int))
    assert acc.network > 0.9
    assert "the network's own %.4f" % acc.network in out
    assert paper.paper_reference(net, "layer7") == 0.078


# --- all or nothing in --out --------------------------------------------------------------------

@pytest.mark.parametrize("command", ["demo", "evaluate"])
def test_a_failure_midway_leaves_no_files_and_no_new_directory(command, workspace, tmp_path,
                                                               capsys, monkeypatch):
    from fastdecode import plotting

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(plotting, "save_top_images", broken)  # after results.txt is written
    out_dir = tmp_path / "new" / "out"
    argv = ([command, "--model", workspace["model"]] if command == "demo"
            else [command, workspace["model"]])
    code, out, err = run(argv + ["--data", workspace["data"], "--limit", "12", "--no-progress",
                                 "--out", out_dir], capsys)
    assert code == 2 and "disk full" in err and err.count("\n") == 1
    assert os.listdir(tmp_path) == []
    # into an existing directory: its files stay as they were, no new ones
    out_dir.mkdir(parents=True)
    (out_dir / "results.txt").write_text("earlier run")
    code, out, err = run(argv + ["--data", workspace["data"], "--limit", "12", "--no-progress",
                                 "--out", out_dir], capsys)
    assert code == 2
    assert os.listdir(out_dir) == ["results.txt"]
    assert (out_dir / "results.txt").read_text() == "earlier run"


def test_layer_names_are_made_safe_file_names(workspace, tmp_path, capsys):
    net = fd.load_matconvnet(workspace["model"])
    layers = net.layers
    layers[2].name = "conv/2\x01"      # names in real files carry slashes and control characters
    layers[4].name = "conv_2_"          # the same file name once made safe
    layers[6].name = ".."
    odd = tmp_path / "odd.mat"
    fd.save_matconvnet(fd.Network(layers, meta=net.meta), str(odd))
    out_dir = tmp_path / "out"
    code, out, err = run(["demo", "--model", odd, "--data", workspace["data"], "--limit", "12",
                          "--no-progress", "--out", out_dir], capsys)
    assert code == 0, err
    names = listing(out_dir)
    assert {"fig4_conv_2_.png", "fig4_conv_2_-2.png", "fig4_...png"} <= set(names)
    assert all(os.sep not in n and n.isprintable() for n in names)
    assert sorted(os.listdir(tmp_path)) == ["odd.mat", "out"]
    assert "\x01" not in out and "conv/2\\x01" in out  # names printed escaped
    for n in names:
        assert "wrote" in out and os.path.join(str(out_dir), n) in out


def test_decode_prints_control_characters_in_layer_names_escaped(tmp_path, capsys):
    net = fd.Network([fd.Conv(np.ones((2, 1, 3, 3), np.float32), name="conv\x01-a")])
    fd.save_matconvnet(net, str(tmp_path / "odd.mat"))
    code, out, err = run(["decode", tmp_path / "odd.mat", "--layer", "0", "--out",
                          tmp_path / "g.png"], capsys)
    assert code == 0, err
    assert "layer conv\\x01-a:" in out and "\x01" not in out


@pytest.mark.parametrize("exc, said", [(MemoryError(), "out of memory"),
                                       (ValueError(), "ValueError")])
def test_an_error_without_a_message_still_says_something(exc, said, workspace, capsys,
                                                         monkeypatch):
    import fastdecode.decoding

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(fastdecode.decoding, "decode", fail)
    code, out, err = run(["decode", workspace["model"], "--layer", "layer1"], capsys)
    assert code == 2 and err == "fastdecode: error: %s\n" % said


# --- refused before the work starts; SIGTERM as an interrupt ------------------------------------

def no_work(*args, **kwargs):
    raise AssertionError("the work started")


@pytest.mark.parametrize("command", ["decode-out", "decode-save", "demo", "evaluate",
                                     "evaluate-new-dir"])
def test_an_output_directory_that_cannot_be_written_is_refused_first(command, workspace, tmp_path,
                                                                    capsys, monkeypatch):
    import fastdecode._app
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: (
        False if os.path.abspath(path) == str(locked) else real_access(path, mode, **kw)))
    monkeypatch.setattr(fastdecode._app, "load_model", no_work)
    argv = {"decode-out": ["decode", workspace["model"], "--layer", "layer1",
                           "--out", locked / "g.png"],
            "decode-save": ["decode", workspace["model"], "--layer", "layer1",
                            "--save", locked / "d.npy"],
            "demo": ["demo", "--model", workspace["model"], "--out", locked],
            "evaluate": ["evaluate", workspace["model"], "--data", workspace["data"],
                         "--out", locked],
            "evaluate-new-dir": ["evaluate", workspace["model"], "--data", workspace["data"],
                                 "--out", locked / "new" / "dir"]}[command]
    code, out, err = run(argv, capsys)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "cannot create files in %s" % locked in err
    assert os.listdir(locked) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="permissions do not stop root")
def test_a_read_only_directory_is_refused_first(workspace, tmp_path, capsys, monkeypatch):
    import fastdecode._app
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    monkeypatch.setattr(fastdecode._app, "load_model", no_work)
    try:
        code, _, err = run(["decode", workspace["model"], "--layer", "layer1", "--save",
                            locked / "d.npy"], capsys)
    finally:
        locked.chmod(0o755)
    assert code == 2 and "cannot create files" in err


@pytest.mark.parametrize("command", ["demo", "evaluate"])
def test_sigterm_stops_like_an_interrupt_and_leaves_no_files(command, workspace, tmp_path,
                                                             capsys, monkeypatch):
    import signal
    import time
    from fastdecode import plotting

    def terminated(*args, **kwargs):  # after results.txt is staged
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)
        raise AssertionError("SIGTERM did not stop the run")

    monkeypatch.setattr(plotting, "save_top_images", terminated)
    before = signal.getsignal(signal.SIGTERM)
    out_dir = tmp_path / "new" / "out"
    argv = ([command, "--model", workspace["model"]] if command == "demo"
            else [command, workspace["model"]])
    code, out, err = run(argv + ["--data", workspace["data"], "--limit", "12", "--no-progress",
                                 "--out", out_dir], capsys)
    assert code == 143 and err == "fastdecode: terminated\n"
    assert os.listdir(tmp_path) == []
    assert signal.getsignal(signal.SIGTERM) is before


def test_sigterm_on_the_command_line_exits_143(workspace, tmp_path):
    import signal
    out_dir = tmp_path / "out"
    cmd = [sys.executable, "-c", "import sys, time, fastdecode.plotting as p; "
           "p.save_top_images = lambda *a, **k: (print('staged', flush=True), time.sleep(60)); "
           "from fastdecode.cli import main; sys.exit(main(sys.argv[1:]))",
           "evaluate", workspace["model"], "--data", workspace["data"], "--limit", "12",
           "--unpool", "nearest", "--no-progress", "--out", str(out_dir)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(fd.__file__))] + sys.path))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=str(tmp_path))  # not the source tree, which is unbuilt in CI
    try:
        for line in proc.stdout:
            if line.startswith("staged"):
                break
        assert [n for n in os.listdir(out_dir) if n.startswith(".fastdecode-")]
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143 and err == "fastdecode: terminated\n"
    assert not os.path.exists(out_dir)
