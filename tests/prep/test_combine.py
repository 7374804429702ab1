"""`pairforge combine`: pairing rules, size policies, conversions, layouts, bad input, resume, exit codes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from tests.conftest import load, pattern, read_manifest, same_files, save, truncated_png

PNG = ["--format", "png", "-q"]


def halves(path):
    img = load(path)
    w = img.shape[1] // 2
    return img[:, :w], img[:, w:]


def all_inputs(manifest: dict) -> list[str]:
    """Every input path that the manifest accounts for, as 'ROLE:path'."""
    seen = [f"{r}:{p}" for it in manifest["items"] for r, p in it["sources"].items()]
    seen += [f"{r}:{p}" for rej in manifest["rejected"] for r, p in rej["paths"].items()]
    return sorted(seen)


def test_pairs_by_key_with_case_insensitive_extension_and_exact_pixels(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    images = {}
    for i, (a_name, b_name) in enumerate([("x.JPG", "x.png"), ("y.png", "y.PNG"), ("z z.png", "z z.png")]):
        images[a_name] = save(a / a_name, pattern(40, 30, seed=i), **({"quality": 100} if "JPG" in a_name else {}))
        images[b_name] = save(b / b_name, pattern(40, 30, seed=10 + i))
    result = cli("combine", a, b, out, "--split", "1,0,0", *PNG)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert sorted(it["key"] for it in manifest["items"]) == ["x", "y", "z_z"]
    assert manifest["rejected"] == []
    left, right = halves(out / "train" / "y.png")
    assert np.array_equal(left, pattern(40, 30, seed=1))
    assert np.array_equal(right, pattern(40, 30, seed=11))
    left, _ = halves(out / "train" / "x.png")
    assert np.array_equal(left, load(a / "x.JPG"))  # decoded JPEG, stored losslessly


def test_suffixes_and_regex_define_keys(tmp_path, cli):
    a, b = tmp_path / "A", tmp_path / "B"
    save(a / "0001_A.jpg", pattern(16, 16, 1))
    save(b / "0001_B.jpg", pattern(16, 16, 2))
    result = cli("combine", a, b, tmp_path / "o1", "--a-suffix", "_A", "--b-suffix", "_B", "--split", "1,0,0", "-q")
    assert result.code == 0
    assert [it["key"] for it in read_manifest(tmp_path / "o1")["items"]] == ["0001"]

    c, d = tmp_path / "C", tmp_path / "D"
    save(c / "img-7-photo.png", pattern(16, 16, 1))
    save(d / "label_7.png", pattern(16, 16, 2))
    save(d / "readme_label.png", pattern(16, 16, 3))
    result = cli("combine", c, d, tmp_path / "o2", "--match", r"(?:img-|label_)(?P<key>\d+)", "--split", "1,0,0", *PNG)
    manifest = read_manifest(tmp_path / "o2")
    assert [it["key"] for it in manifest["items"]] == ["7"]
    assert manifest["rejected"][0]["reason"] == "name does not match --match"


def test_bad_regex_is_a_usage_error(tmp_path, cli):
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    result = cli("combine", tmp_path / "A", tmp_path / "B", tmp_path / "o", "--match", r"(\d+)")
    assert result.code == 2
    assert "(?P<key>...)" in result.err
    assert "Traceback" not in result.err


def test_ambiguous_and_unmatched_files_are_rejected_never_guessed(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    save(a / "x.jpg", pattern(16, 16, 1))
    save(a / "x.png", pattern(16, 16, 2))
    save(b / "x.png", pattern(16, 16, 3))
    save(a / "only_a.png", pattern(16, 16, 4))
    save(b / "only_b.png", pattern(16, 16, 5))
    assert cli("combine", a, b, out, *PNG).code == 0
    manifest = read_manifest(out)
    assert manifest["items"] == []
    reasons = {next(iter(r["paths"].items())): r["reason"] for r in manifest["rejected"]}
    assert reasons[("A", "x.jpg")].startswith("ambiguous key 'x'")
    assert reasons[("A", "x.png")].startswith("ambiguous key 'x'")
    assert reasons[("A", "only_a.png")] == "no matching B file"
    assert reasons[("B", "only_b.png")] == "no matching A file"
    assert reasons[("B", "x.png")] == "no matching A file"


def test_bad_inputs_each_land_in_rejected_and_the_run_goes_on(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    for name in ["good", "trunc", "empty", "text"]:
        save(b / f"{name}.png", pattern(16, 16, 9))
    save(a / "good.png", pattern(16, 16, 1))
    truncated_png(a / "trunc.png", 64, 64)
    (a / "empty.png").write_bytes(b"")
    (a / "text.png").write_text("not an image at all")
    (a / ".DS_Store").write_bytes(b"\0\1")
    (a / "notes.txt").write_text("hello")
    save(a / "nested" / "good.png", pattern(16, 16, 1))
    result = cli("combine", a, b, out, "--split", "1,0,0", "--json")
    assert result.code == 0, result.err
    summary = result.json()
    assert summary["written"] == 1
    manifest = read_manifest(out)
    reasons = {r["paths"].get("A"): r["reason"] for r in manifest["rejected"]}
    assert reasons["trunc.png"].startswith("corrupt image:")
    assert reasons["empty.png"] == "empty file (0 bytes)"
    assert reasons["text.png"] == "corrupt image: not a recognised image format"
    assert reasons[".DS_Store"] == "hidden file"
    assert reasons["notes.txt"] == "not an image file (.txt)"
    assert reasons["nested"].startswith("sub-folder ignored")
    assert summary["rejected_by_reason"] == {
        "corrupt image": 2,
        "empty file": 1,
        "hidden file": 1,
        "not an image file": 1,
        "sub-folder ignored": 1,
    }
    # every input is accounted for
    inputs = [f"A:{p.name}" for p in a.iterdir()] + [f"B:{p.name}" for p in b.iterdir()]
    assert all_inputs(manifest) == sorted(inputs)
    # --strict turns rejections into exit code 1
    assert cli("combine", a, b, out, "--split", "1,0,0", "--strict", "-q").code == 1


@pytest.mark.parametrize(
    ("policy", "extra", "size"),
    [
        ("resize-b", [], (40, 30)),
        ("pad", [], (50, 30)),
        ("crop", [], (40, 20)),
        ("resize", ["--size", "24x12"], (24, 12)),
    ],
)
def test_size_policies(tmp_path, cli, policy, extra, size):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    save(a / "k.png", pattern(40, 30, 1))
    save(b / "k.png", pattern(50, 20, 2))
    result = cli("combine", a, b, out, "--size-policy", policy, *extra, "--split", "1,0,0", *PNG)
    assert result.code == 0, result.err
    left, right = halves(out / "train" / "k.png")
    assert left.shape[:2] == right.shape[:2] == (size[1], size[0])
    if policy == "resize-b":
        assert np.array_equal(left, pattern(40, 30, 1))
    if policy == "pad":  # B padded with white above and below, original pixels centred
        assert (right[:5] == 255).all() and np.array_equal(right[5:25], pattern(50, 20, 2))
        assert np.array_equal(left[:, 5:45], pattern(40, 30, 1))
    if policy == "crop":
        assert np.array_equal(left, pattern(40, 30, 1)[5:25])
        assert np.array_equal(right, pattern(50, 20, 2)[:, 5:45])


def test_size_mismatch_with_error_policy_is_rejected_with_sizes(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    save(a / "k.png", pattern(640, 480, 1))
    save(b / "k.png", pattern(512, 512, 2))
    assert cli("combine", a, b, out, "-q").code == 0
    [rejected] = read_manifest(out)["rejected"]
    assert rejected["reason"] == "size mismatch 640x480 vs 512x512 with --size-policy error"
    assert rejected["paths"] == {"A": "k.png", "B": "k.png"}


def test_mixed_modes_are_converted_explicitly(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    gray = pattern(20, 10, 1)[:, :, 0]
    save(a / "gray.png", gray)
    save(b / "gray.png", pattern(20, 10, 2))
    rgba = np.dstack([pattern(20, 10, 3), np.full((10, 20), 0, np.uint8)])
    rgba[:, :10, 3] = 255
    save(a / "rgba.png", rgba)
    save(b / "rgba.png", pattern(20, 10, 2))
    palette = Image.fromarray(pattern(20, 10, 4)).quantize(8)
    palette.save(a / "pal.png")
    save(b / "pal.png", pattern(20, 10, 2))
    deep = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 300).astype(np.uint16)
    Image.fromarray(deep).save(a / "deep.png")
    save(b / "deep.png", pattern(20, 10, 2))
    # EXIF orientation 6 (rotate 90 CW when displayed): stored 10x20, shown 20x10
    stored = pattern(10, 20, 5)
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    Image.fromarray(stored).save(buf, "JPEG", quality=100, exif=exif)
    (a / "rot.jpg").write_bytes(buf.getvalue())
    save(b / "rot.png", pattern(20, 10, 2))
    assert cli("combine", a, b, out, "--split", "1,0,0", *PNG).code == 0
    assert read_manifest(out)["rejected"] == []
    left = {k: halves(out / "train" / f"{k}.png")[0] for k in ["gray", "rgba", "pal", "deep", "rot"]}
    assert np.array_equal(left["gray"], np.repeat(gray[:, :, None], 3, 2))
    assert np.array_equal(left["rgba"][:, :10], pattern(20, 10, 3)[:, :10])
    assert (left["rgba"][:, 10:] == 255).all()  # transparent -> white background
    assert np.array_equal(left["pal"], np.asarray(palette.convert("RGB")))
    assert np.array_equal(left["deep"][:, :, 0], np.rint(deep / 257).astype(np.uint8))
    assert left["rot"].shape == (10, 20, 3)  # rotated upright
    assert np.array_equal(left["rot"], np.rot90(load(a / "rot.jpg"), -1))  # orientation 6: 90° clockwise


def test_split_folders_are_honoured_and_layouts_written(tmp_path, cli):
    a, b, out = tmp_path / "A", tmp_path / "B", tmp_path / "out"
    for split, n in [("train", 3), ("val", 1), ("test", 2)]:
        for i in range(n):
            save(a / split / f"{split}{i}.png", pattern(16, 16, i))
            save(b / split / f"{split}{i}.png", pattern(16, 16, 50 + i))
    save(a / "extra" / "e.png", pattern(16, 16, 1))
    result = cli("combine", a, b, out, "--layout", "ab,unaligned", "--direction", "BA", *PNG)
    assert result.code == 0, result.err
    manifest = read_manifest(out)
    assert manifest["counts"] == {"test": 2, "train": 3, "val": 1}
    assert manifest["layouts"] == ["ab", "unaligned"]
    left, right = halves(out / "val" / "val0.png")
    assert np.array_equal(left, pattern(16, 16, 50))  # BA: B on the left
    assert np.array_equal(right, pattern(16, 16, 0))
    assert np.array_equal(load(out / "trainA" / "train2.png"), pattern(16, 16, 52))
    assert np.array_equal(load(out / "testB" / "test1.png"), pattern(16, 16, 1))
    assert {
        "A": "extra",
    } in [r["paths"] for r in manifest["rejected"]]


def test_split_folders_on_one_side_only_is_a_usage_error(tmp_path, cli):
    save(tmp_path / "A" / "train" / "x.png", pattern(8, 8))
    save(tmp_path / "B" / "x.png", pattern(8, 8))
    result = cli("combine", tmp_path / "A", tmp_path / "B", tmp_path / "o")
    assert result.code == 2 and "train/val/test" in result.err


def test_missing_input_and_output_inside_input_are_usage_errors(tmp_path, cli):
    save(tmp_path / "A" / "x.png", pattern(8, 8))
    result = cli("combine", tmp_path / "A", tmp_path / "nope", tmp_path / "o")
    assert result.code == 2
    assert result.err.strip() == f"error: input folder {tmp_path / 'nope'} does not exist"
    save(tmp_path / "B" / "x.png", pattern(8, 8))
    result = cli("combine", tmp_path / "A", tmp_path / "B", tmp_path / "A" / "out")
    assert result.code == 2 and "inside the A input" in result.err


def make_flat(tmp_path, n=20):
    a, b = tmp_path / "A", tmp_path / "B"
    for i in range(n):
        save(a / f"img{i:03d}.jpg", pattern(32, 32, i), quality=95)
        save(b / f"img{i:03d}.jpg", pattern(32, 32, 100 + i), quality=95)
    return a, b


def test_resume_dry_run_overwrite_and_determinism(tmp_path, cli):
    a, b = make_flat(tmp_path)
    out = tmp_path / "out"
    dry = cli("combine", a, b, out, "--dry-run", "--json")
    assert dry.code == 0 and dry.json()["planned"] == 20 and not out.exists()
    first = cli("combine", a, b, out, "--json", "--workers", "2")
    assert first.code == 0 and first.json()["written"] == 20
    assert first.json()["counts"] == {"test": 2, "train": 16, "val": 2}
    files = {p.name: p.read_bytes() for p in out.rglob("*.jpg")}
    (out / "train" / sorted(p.name for p in (out / "train").iterdir())[0]).unlink()
    again = cli("combine", a, b, out, "--json").json()
    assert (again["written"], again["skipped"]) == (1, 19)
    assert {p.name: p.read_bytes() for p in out.rglob("*.jpg")} == files
    other = tmp_path / "other"
    cli("combine", a, b, other, "-q", "--workers", "1")
    assert same_files(other) == same_files(out)  # same keys, splits, bytes
    changed = cli("combine", a, b, out, "--seed", "3")
    assert changed.code == 2 and "seed" in changed.err and "--overwrite" in changed.err
    rebuilt = cli("combine", a, b, out, "--seed", "3", "--overwrite", "--json").json()
    assert rebuilt["written"] == 20
    on_disk = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert on_disk == sorted(o["path"] for it in read_manifest(out)["items"] for o in it["outputs"])


def test_manifest_records_the_contract(tmp_path, cli):
    a, b = make_flat(tmp_path, 4)
    out = tmp_path / "out"
    cli("combine", a, b, out, "--split", "2,1,1", "-q")
    manifest = read_manifest(out)
    assert manifest["schema"] == 1 and manifest["tool"]["name"] == "pairforge"
    assert manifest["command"][:2] == ["pairforge", "combine"]
    assert manifest["sources"] == {"A": str(a), "B": str(b)}
    assert manifest["options"]["split"] == "2,1,1" and manifest["options"]["format"] == "jpg"
    item = manifest["items"][0]
    assert set(item) == {"key", "split", "sources", "outputs"}
    output = item["outputs"][0]
    assert (output["width"], output["height"]) == (64, 32)
    import hashlib

    assert hashlib.sha256((out / output["path"]).read_bytes()).hexdigest() == output["sha256"]
