"""Bad and unusual inputs to the loaders, the body model, the files the project writes and the command line.

Every case asserts the error's type and a fragment of its message (the argument, file or record it names), in the
spirit of transformers' and datasets' own tests of bad input. Nothing is silently lost, clipped or overwritten.
"""

import json
import os
import stat
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unipose import conversion
from unipose.body_model import BodyModel
from unipose.cli import main as cli_main
from unipose.data import posescript
from unipose.data.amass import read_amass_sequence
from unipose.data.pose_estimation import load_pose_estimation, read_pose_estimation_annotations
from unipose.evaluation.runner import resolve_device
from unipose.files import atomic_path, open_npz, staged_directory, staged_files, write_json_atomically
from unipose.visualization import save_obj

FIXTURES = Path(__file__).parent / "fixtures"


# --------------------------------------------------------------------------------------------------------------
# PoseScript / PoseFix files
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("reader", ["pose_index", "captions"])
def test_two_ids_that_name_the_same_pose_are_refused_not_dropped(tmp_path, reader):
    path = tmp_path / "file.json"
    if reader == "pose_index":
        path.write_text(json.dumps({"1": ["AMASS", "a.npz", 0], "01": ["AMASS", "b.npz", 3]}))
        read = posescript.read_pose_index
    else:
        path.write_text(json.dumps({"7": ["first caption"], "007": ["second caption"]}))
        read = posescript.read_texts
    with pytest.raises(
        ValueError, match=r"the ids '1' and '01' are the same id|the ids '7' and '007' are the same id"
    ):
        read(path)


def test_a_latin1_caption_file_is_named_with_what_to_do(tmp_path):
    path = tmp_path / "captions.json"
    path.write_bytes('{"1": ["Le bras lev\xe9"]}'.encode("latin-1"))
    with pytest.raises(ValueError, match=r"is not UTF-8 text .*re-encode"):
        posescript.read_texts(path)


def test_deeply_nested_json_is_refused_with_the_file_name(tmp_path):
    path = tmp_path / "captions.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(ValueError, match=r"captions\.json.*nests JSON too deeply"):
        posescript.read_texts(path)


def test_a_pose_index_entry_cannot_reach_outside_the_amass_folder(tmp_path):
    reference = posescript.PoseReference("AMASS", "../../etc/passwd", 0)
    with pytest.raises(ValueError, match=r"Pose id '3' refers to '\.\./\.\./etc/passwd', which lies outside"):
        posescript._amass_file(reference, tmp_path, "3")
    for sequence in ("CMU/../../x.npz", "/etc/passwd", "."):
        with pytest.raises(ValueError, match="which lies outside"):
            posescript._amass_file(posescript.PoseReference("AMASS", sequence, 0), tmp_path, "3")


def test_a_sub_dataset_linked_into_the_amass_folder_is_inside_it(tmp_path):
    # A common layout: AMASS/CMU -> a folder on another disk.
    elsewhere = tmp_path / "disk" / "CMU" / "01"
    elsewhere.mkdir(parents=True)
    (tmp_path / "AMASS").mkdir()
    (tmp_path / "AMASS" / "CMU").symlink_to(tmp_path / "disk" / "CMU", target_is_directory=True)
    reference = posescript.PoseReference("AMASS", "CMU/01/01_01_poses.npz", 0)
    assert posescript._amass_file(reference, tmp_path / "AMASS", "3") == tmp_path / "AMASS/CMU/01/01_01_poses.npz"
    reference = posescript.PoseReference("AMASS", "CMU/./01/../01/01_01_poses.npz", 0)
    assert posescript._amass_file(reference, tmp_path / "AMASS", "3") == tmp_path / "AMASS/CMU/01/01_01_poses.npz"


# --------------------------------------------------------------------------------------------------------------
# AMASS
# --------------------------------------------------------------------------------------------------------------


def _amass_file(tmp_path, poses, **extra) -> Path:
    path = tmp_path / "sequence_poses.npz"
    np.savez(path, poses=poses, **extra)
    return path


def test_finite_but_huge_axis_angle_values_are_refused_with_their_frame(tmp_path):
    poses = np.zeros((5, 156))
    poses[3, 10] = 1e38
    with pytest.raises(ValueError, match=r"axis-angle value of 1e\+38 at frame 3"):
        read_amass_sequence(_amass_file(tmp_path, poses, mocap_framerate=60.0))


def test_a_negative_frame_rate_is_refused_not_read_as_every_frame(tmp_path):
    path = _amass_file(tmp_path, np.zeros((6, 156)), mocap_framerate=-30.0)
    with pytest.raises(
        ValueError, match=r"`mocap_framerate` in .* is -30.0; a capture rate must be a positive"
    ):
        read_amass_sequence(path, target_fps=10)
    with pytest.raises(ValueError, match=r"`target_fps` must be a positive number"):
        read_amass_sequence(_amass_file(tmp_path, np.zeros((6, 156)), mocap_framerate=30.0), target_fps=-5)


@pytest.mark.parametrize("content", [b"", b"not a zip archive at all", b"PK\x03\x04truncated"])
def test_a_corrupt_npz_is_reported_with_its_path_everywhere(tmp_path, content):
    path = tmp_path / "broken.npz"
    path.write_bytes(content)
    with pytest.raises(
        ValueError, match=r"AMASS sequence file .*broken\.npz is not a readable \.npz archive"
    ):
        read_amass_sequence(path)
    with pytest.raises(ValueError, match=r"PoseEst annotation file .*broken\.npz is not a readable"):
        read_pose_estimation_annotations(path)
    with pytest.raises(ValueError, match=r"body model file .*broken\.npz is not a readable"):
        BodyModel(path)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not Path("/proc/self/fd").exists(), reason="counts open files through /proc")
def test_a_corrupt_body_model_file_leaves_no_file_open(tmp_path):
    path = tmp_path / "SMPLH_NEUTRAL.npz"
    np.savez(path, v_template=np.zeros((10, 3)))  # a readable archive that is not a body model
    before = _open_descriptors()
    for _ in range(5):
        with pytest.raises(ValueError, match=r"lacks the arrays \['J_regressor'"):
            BodyModel(path)
    assert _open_descriptors() == before


def test_an_array_that_cannot_be_read_names_the_archive_and_the_array(tmp_path):
    path = tmp_path / "objects.npz"
    np.savez(path, names=np.array([{"a": 1}], dtype=object))
    with open_npz(path, "test file") as archive:
        with pytest.raises(ValueError, match=r"Array `names` of the test file .*objects\.npz cannot be read"):
            archive["names"]
        with pytest.raises(KeyError, match=r"has no array `poses`; it holds \['names'\]"):
            archive["poses"]


# --------------------------------------------------------------------------------------------------------------
# Pose-estimation corpora
# --------------------------------------------------------------------------------------------------------------


def _poseest(tmp_path, names) -> Path:
    images = tmp_path / "images"
    images.mkdir(exist_ok=True)
    Image.new("RGB", (32, 32), (120, 120, 120)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"\x89PNG not really")
    path = tmp_path / "corpus.npz"
    count = len(names)
    np.savez(
        path,
        imgname=np.array(names),
        pose=np.zeros((count, 72)),
        center=np.full((count, 2), 16.0),
        scale=np.full(count, 0.1),
    )
    return path


def test_an_image_name_outside_the_image_root_is_refused(tmp_path):
    path = _poseest(tmp_path, ["good.png", "../../etc/passwd"])
    with pytest.raises(
        ValueError, match=r"Row 1 of .* names the image '\.\./\.\./etc/passwd', which lies outside"
    ):
        load_pose_estimation(path, tmp_path / "images", cache_dir=tmp_path / "cache")


def test_images_in_a_folder_linked_into_the_image_root_are_read(tmp_path):
    path = _poseest(tmp_path, ["linked/good.png"])
    (tmp_path / "disk").mkdir()
    Image.new("RGB", (32, 32), (120, 120, 120)).save(tmp_path / "disk" / "good.png")
    (tmp_path / "images" / "linked").symlink_to(tmp_path / "disk", target_is_directory=True)
    dataset = load_pose_estimation(path, tmp_path / "images", cache_dir=tmp_path / "cache")
    assert len(dataset) == 1 and dataset[0]["image"].size[0] > 0


def test_an_absolute_image_name_is_refused(tmp_path):
    path = _poseest(tmp_path, [str(tmp_path / "images" / "good.png")])
    with pytest.raises(ValueError, match=r"Row 0 .* image names must be relative paths"):
        load_pose_estimation(path, tmp_path / "images", cache_dir=tmp_path / "cache")


def test_an_unreadable_image_names_its_row_and_file(tmp_path):
    path = _poseest(tmp_path, ["good.png", "broken.png"])
    with pytest.raises(Exception) as caught:
        load_pose_estimation(path, tmp_path / "images", cache_dir=tmp_path / "cache")
    chain, error = [], caught.value
    while error is not None:
        chain.append(str(error))
        error = error.__cause__ or error.__context__
    assert any("Row 1 of the PoseEst annotations" in text and "broken.png" in text for text in chain), chain


# --------------------------------------------------------------------------------------------------------------
# Files the project writes
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture
def umask_027():
    previous = os.umask(0o027)
    yield
    os.umask(previous)


def test_written_files_get_the_users_permissions_not_mkstemps(tmp_path, umask_027):
    obj = save_obj(np.zeros((3, 3)), np.array([[0, 1, 2]]), tmp_path / "mesh.obj")
    write_json_atomically(tmp_path / "texts.json", {"a": 1})
    for path in (obj, tmp_path / "texts.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, path


def test_a_failed_write_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "report.md"
    target.write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as temporary:
            temporary.write_text("half")
            raise RuntimeError("crash while writing")
    assert target.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_a_staged_directory_replaces_the_old_folder_whole_or_not_at_all(tmp_path, umask_027):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_directory(target) as staging:
            (staging / "new.json").write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in target.iterdir()) == ["old.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]

    with staged_directory(target) as staging:
        assert target.exists() and not any(staging.iterdir())  # the old folder stays until the end
        (staging / "new.json").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.json"]  # nothing of the old folder is left
    assert stat.S_IMODE(target.stat().st_mode) == 0o750  # the user's permissions, not mkdtemp's 0o700
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_staged_files_join_the_folder_last_ones_last_or_not_at_all(tmp_path, monkeypatch):
    target = tmp_path / "run"
    target.mkdir()
    (target / "checkpoint-1").mkdir()
    (target / "config.json").write_text("old")
    with pytest.raises(RuntimeError):
        with staged_files(target) as staging:
            (staging / "config.json").write_text("half")
            raise RuntimeError("crash while writing")
    assert sorted(p.name for p in target.iterdir()) == ["checkpoint-1", "config.json"]
    assert (target / "config.json").read_text() == "old"

    moved, replace = [], os.replace

    def recording_replace(source, destination):
        moved.append(Path(destination).name)
        replace(source, destination)

    monkeypatch.setattr(os, "replace", recording_replace)
    with staged_files(target, last=("results.json",)) as staging:
        for name in ("results.json", "config.json", "weights.safetensors"):
            (staging / name).write_text("new")
    assert sorted(moved) == ["config.json", "results.json", "weights.safetensors"]
    assert moved[-1] == "results.json"
    assert sorted(p.name for p in target.iterdir()) == [
        "checkpoint-1", "config.json", "results.json", "weights.safetensors"
    ]  # fmt: skip
    assert (target / "config.json").read_text() == "new"


# --------------------------------------------------------------------------------------------------------------
# Conversion output and the command line
# --------------------------------------------------------------------------------------------------------------


def _convert(out: Path, overwrite: bool):
    root = FIXTURES / "release_a"
    return conversion.convert_release(
        root / "base",
        root / "unipose",
        root / "pose_vqvae.ckpt",
        root / "tokenhmr_model.ckpt",
        out,
        overwrite=overwrite,
    )


def test_overwrite_never_deletes_a_folder_the_converter_did_not_write(tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match=r"replaces only an earlier conversion"):
        _convert(precious, overwrite=True)
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_overwrite_replaces_an_earlier_conversion_and_an_empty_folder_is_used(tmp_path):
    out = tmp_path / "converted"
    out.mkdir()
    _convert(out, overwrite=False)  # empty: fine
    (out / "marker").write_text("old")
    with pytest.raises(FileExistsError, match=r"pass `overwrite=True`"):
        _convert(out, overwrite=False)
    _convert(out, overwrite=True)
    assert not (out / "marker").exists() and (out / "conversion_report.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["converted"]  # no staging or previous folder left


def test_command_line_errors_are_one_line_with_exit_code_1(tmp_path, capsys):
    code = cli_main(
        ["verify", "--model", str(tmp_path / "missing"), "--reference", str(tmp_path / "nope.safetensors")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("unipose verify: error: FileNotFoundError: The reference file")
    assert "Traceback" not in err and len(err.strip().splitlines()) == 2


def test_command_line_debug_shows_the_traceback(tmp_path):
    with pytest.raises(FileNotFoundError, match="reference file"):
        cli_main(
            ["verify", "--debug", "--model", str(tmp_path), "--reference", str(tmp_path / "nope.safetensors")]
        )


def test_command_line_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as caught:
        cli_main(["verify", "--model"])
    assert caught.value.code == 2
    assert "usage: unipose verify" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ("gpu0", r"`--device` must be `auto`, `cpu`, .* got 'gpu0'"),
        ("cuda:7", r"no CUDA device|has \d+ CUDA device"),
    ],
)
def test_a_nonsense_device_is_refused_by_name(value, fragment):
    with pytest.raises(ValueError, match=fragment):
        resolve_device(value)


# --------------------------------------------------------------------------------------------------------------
# Images of more than 8 bits
# --------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["pil_i16", "pil_i32", "numpy_uint16"])
def test_16_bit_images_are_scaled_not_clipped_to_white(kind):
    from unipose.processing_inputs import to_rgb_images

    gradient = (np.arange(64 * 48).reshape(48, 64) * 21).astype(np.uint16)  # 0 ... 64,491
    source = {
        "pil_i16": Image.fromarray(gradient),
        "pil_i32": Image.fromarray(gradient.astype(np.int32)),
        "numpy_uint16": gradient,
    }[kind]
    (rgb,) = to_rgb_images(source, "images")
    pixels = np.asarray(rgb)[..., 0].astype(int)
    expected = np.round(gradient / 257.0).astype(int)
    assert np.abs(pixels - expected).max() <= 1
    assert (pixels == 255).mean() < 0.01  # PIL's own convert makes 98 % of this image white


def test_a_float_image_mode_outside_0_1_is_scaled_by_its_maximum_and_negative_values_are_refused():
    from unipose.processing_inputs import to_rgb_images

    values = np.linspace(0, 1000, 64 * 64, dtype=np.float32).reshape(64, 64)
    (rgb,) = to_rgb_images(Image.fromarray(values), "images")
    assert np.asarray(rgb)[..., 0].max() == 255 and np.asarray(rgb)[0, 0, 0] == 0
    with pytest.raises(ValueError, match=r"`images` \(PIL mode 'F'\) holds negative"):
        to_rgb_images(Image.fromarray(values - 10), "images")


# --------------------------------------------------------------------------------------------------------------
# Model inputs
# --------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny():
    from unipose.testing import tiny_model_and_processor

    return tiny_model_and_processor(seed=0)


def test_float_input_ids_and_raw_uint8_pixels_are_refused_by_name(tiny):
    import torch

    model, processor = tiny
    inputs = processor(text=["Describe <image>"], images=[Image.new("RGB", (40, 30), (90, 120, 150))])
    with pytest.raises(TypeError, match=r"`input_ids` must be an integer tensor .* got dtype torch.float32"):
        model(**{**inputs, "input_ids": inputs["input_ids"].float()})
    raw = (inputs["pixel_values"] * 50 + 100).clamp(0, 255).to(torch.uint8)
    with pytest.raises(
        TypeError, match=r"`pixel_values` must be a floating-point tensor .* got dtype torch.uint8"
    ):
        model(**{**inputs, "pixel_values": raw})
    with pytest.raises(ValueError, match=r"`pose_pixel_values` must have 4 dimensions"):
        model(**{**inputs, "pose_pixel_values": inputs["pose_pixel_values"][0]})


# --------------------------------------------------------------------------------------------------------------
# Text typed by users
# --------------------------------------------------------------------------------------------------------------

# Every kind of control token a user could type, and the BOS.
TYPED = "what is <pose_query>, <image>, <pose>, <p> <pose_3> </p> or <s>?"


def _count(ids, *token_ids):
    return sum(int((ids == token_id).sum()) for token_id in token_ids)


def test_a_typed_pose_query_without_target_poses_is_refused_like_the_other_placeholders(tiny):
    _, processor = tiny
    with pytest.raises(
        ValueError, match=r"\[1\] `<pose_query>` placeholder\(s\) per sample but no `target_poses`"
    ):
        processor(text="Tell me about <pose_query>")
    with pytest.raises(ValueError, match=r"\[1\] `<pose>` placeholder\(s\) per sample but no `poses`"):
        processor(text="Tell me about <pose>")
    with pytest.raises(ValueError, match=r"malformed pose span"):
        processor(text="Tell me about <p> this")
    with pytest.raises(ValueError, match=r"pose token\(s\) and 1 `</p>` outside"):
        processor(text="Tell me about <pose_3> </p> this")


def test_sanitized_chat_turns_typed_control_tokens_into_text_and_keeps_the_items(tiny):
    import torch

    model, processor = tiny
    pose = torch.zeros(22, 3)
    chat = [{"role": "user", "content": [{"type": "text", "text": TYPED}, {"type": "pose", "pose": pose}]}]
    inputs = processor.apply_chat_template(
        chat, tokenize=True, return_dict=True, add_generation_prompt=True, sanitize_control_tokens=True
    )
    ids = inputs["input_ids"][0]
    n = processor.num_pose_tokens
    # Only the pose item is a pose: one span of `<pose>` placeholders; no query, no image, no codes, one BOS.
    assert _count(ids, processor.pose_token_id) == n and _count(ids, processor.pose_start_token_id) == 1
    assert _count(ids, processor.pose_query_token_id, processor.image_token_id) == 0
    assert int(processor.pose_spans.is_code(ids.numpy()).sum()) == 0
    assert _count(ids, processor.tokenizer.bos_token_id) == 1
    assert TYPED in processor.decode(ids, skip_special_tokens=True)
    assert inputs["pose_values"].shape == (1, 22, 6)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert out.sequences.shape[1] > ids.shape[0]


def test_sanitizing_text_without_control_tokens_changes_nothing(tiny):
    import torch

    _, processor = tiny
    chat = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Describe this pose:"},
                {"type": "pose", "pose": torch.zeros(22, 3)},
            ],
        }
    ]
    kwargs = {"tokenize": True, "return_dict": True, "add_generation_prompt": True}
    plain = processor.apply_chat_template(chat, **kwargs)
    sanitized = processor.apply_chat_template(chat, **kwargs, sanitize_control_tokens=True)
    assert torch.equal(plain["input_ids"], sanitized["input_ids"])
    assert torch.equal(plain["attention_mask"], sanitized["attention_mask"])


@pytest.mark.parametrize("side", ["left", "right"])
def test_sanitized_prompts_are_truncated_as_the_tokenizer_truncates(tiny, side):
    import torch

    _, processor = tiny
    text = "Describe a person who kneels on one knee and raises both arms above the head"
    kwargs = {"truncation": True, "max_length": 9, "return_tensors": "pt"}
    processor.tokenizer.truncation_side = side
    try:
        plain = processor(text=[text], **kwargs)["input_ids"]
        sanitized = processor(text=[text], sanitize_control_tokens=True, **kwargs)["input_ids"]
    finally:
        processor.tokenizer.truncation_side = "right"
    assert plain.shape[1] == 9 and plain[0, 0] == processor.tokenizer.bos_token_id  # the BOS stays
    assert torch.equal(sanitized, plain)


def test_marked_user_text_in_a_hand_written_prompt_is_plain_text(tiny):
    import torch

    _, processor = tiny
    marked = processor.mark_control_tokens(
        TYPED + " \U000f0000<image>\U000f0001"
    )  # forged markers are dropped
    prompts = ["Describe this pose: <pose> " + marked, "And <image> " + marked]
    inputs = processor(
        text=prompts,
        poses=[torch.zeros(22, 3)],
        images=[Image.new("RGB", (40, 30), (90, 120, 150))],
        sanitize_control_tokens=True,
    )
    first, second = inputs["input_ids"]
    assert _count(first, processor.pose_token_id) == processor.num_pose_tokens
    assert _count(first, processor.pose_query_token_id, processor.image_token_id) == 0
    assert _count(second, processor.image_token_id) == processor.image_seq_length
    assert _count(second, processor.pose_token_id, processor.pose_start_token_id) == 0
    assert [_count(row, processor.tokenizer.bos_token_id) for row in inputs["input_ids"]] == [1, 1]
    # The same prompts unmarked are refused: the typed `<pose_query>` has no target.
    with pytest.raises(ValueError, match="no `target_poses`"):
        processor(text=["Describe this pose: <pose> what is <pose_query>?"], poses=[torch.zeros(22, 3)])
    # Truncation still may only cut text: typed tokens are text, the pose span is protected.
    length = int(inputs["attention_mask"][0].sum())
    cut = processor(
        text=prompts[:1],
        poses=[torch.zeros(22, 3)],
        sanitize_control_tokens=True,
        truncation=True,
        max_length=length - 3,
    )
    assert cut["input_ids"].shape[1] == length - 3
    with pytest.raises(ValueError, match="would cut an image or a pose span"):
        processor(
            text=["<pose> " + marked],
            poses=[torch.zeros(22, 3)],
            sanitize_control_tokens=True,
            truncation=True,
            max_length=5,
        )


def test_training_reports_a_missing_corpus_before_loading_any_model(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "train_unipose", Path(__file__).parents[1] / "train" / "train_unipose.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    recipe = (Path(__file__).parents[1] / "train" / "recipes" / "stage1_cpu.yaml").read_text()
    recipe = recipe.replace("data/synthetic/pose_text", str(tmp_path / "missing" / "pose_text"))
    recipe = recipe.replace(
        "tiny_model_seed: 0", f"tiny_model_seed: null\nmodel_name_or_path: {tmp_path / 'no_model'}"
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(recipe)
    args = script.make_parser().parse_args_and_config(
        ["--config", str(path), "--output_dir", str(tmp_path / "out")]
    )
    # A model folder that does not exist is named as a folder, not looked up on the Hub as a model id.
    with pytest.raises(FileNotFoundError, match=r"`model_name_or_path` '.*no_model' does not exist"):
        script.main(*args)
    # With a model folder in place (never loaded here), the missing corpus is reported before the model loads.
    (tmp_path / "no_model").mkdir()
    (tmp_path / "no_model" / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"The corpus '.*missing/pose_text' does not exist"):
        script.main(*args)


@pytest.mark.parametrize("keep", [0.5, 0.999, 4])
def test_a_weight_file_cut_short_is_named(tmp_path, tiny, keep):
    from transformers import AutoModel

    model, _ = tiny
    model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: int(len(data) * keep) if keep < 1 else keep])
    with pytest.raises(ValueError, match=r"The weight file .*model\.safetensors is damaged or incomplete: it has"):
        AutoModel.from_pretrained(tmp_path, trust_remote_code=True)


@pytest.mark.parametrize("script", ["train_unipose.py", "train_pose_vision.py", "train_retrieval.py"])
def test_a_bad_option_value_is_reported_in_one_line_not_the_whole_usage(script):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, str(Path(__file__).parents[1] / "train" / script), "--learning_rate", "abc"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "Warning" not in line and line.strip()]
    assert lines == [
        f"{script}: error: argument --learning_rate/--learning-rate: invalid float value: 'abc'",
        f"Run `{script} --help` for the options.",
    ]


def test_every_training_script_reads_a_yaml_recipe_and_the_command_line_wins(tmp_path):
    import importlib.util

    from transformers import TrainingArguments

    from unipose.training.pose_vision import parse_arguments as pose_vision_arguments

    spec = importlib.util.spec_from_file_location(
        "train_retrieval", Path(__file__).parents[1] / "train" / "train_retrieval.py"
    )
    retrieval_script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(retrieval_script)

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\ntrain_data: [corpus]\nlearning_rate: 0.5\n")
    args, training_args = pose_vision_arguments(["--config", str(recipe), "--learning_rate", "0.25"])
    assert isinstance(training_args, TrainingArguments) and training_args.learning_rate == 0.25
    assert args.train_data == ["corpus"]
    assert pose_vision_arguments([str(recipe)])[1].learning_rate == 0.5  # a lone recipe path is `--config`
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\npretrain_data: [corpus]\nlearning_rate: 0.5\n")

    def parse_retrieval_arguments(argv):
        return retrieval_script.make_parser().parse(argv)  # a fresh parser: `--config` sets its defaults

    args, training_args = parse_retrieval_arguments(["--config", str(recipe), "--learning_rate", "0.25"])
    assert training_args.learning_rate == 0.25 and args.pretrain_data == ["corpus"]
    assert parse_retrieval_arguments([str(recipe)])[1].learning_rate == 0.5  # not the script's default 2e-4
    recipe.write_text(f"output_dir: {tmp_path / 'out'}\npretrain_data: [corpus]\nlearning_rat: 0.5\n")
    with pytest.raises(ValueError, match=r"Unknown arguments from config file: \['--learning_rat'"):
        parse_retrieval_arguments(["--config", str(recipe)])


def test_finite_but_huge_axis_angle_values_are_refused_everywhere_not_turned_into_nan(tiny):
    from unipose.body_model import pose_to_joints
    from unipose.rotations import to_rotation_matrix

    _, processor = tiny
    huge = np.full((22, 3), 1e38, dtype=np.float32)
    message = r"`{}` holds an axis-angle rotation of 1.73e\+38 radians at pose 0, joint 0; expected angles within 1000"
    with pytest.raises(ValueError, match=message.format("poses")):
        to_rotation_matrix(huge)
    with pytest.raises(ValueError, match=message.format("poses")):
        pose_to_joints(huge[None])
    with pytest.raises(ValueError, match=message.format(r"poses\[0\]")):
        processor(text="Describe <pose>", poses=[huge])
    # A few turns are still rotations.
    assert np.isfinite(np.asarray(to_rotation_matrix(np.full((22, 3), 20.0)))).all()


def test_a_data_path_that_is_a_file_is_named_as_one(tmp_path):
    from unipose.data.corpus import discover_datasets

    (tmp_path / "corpus.json").write_text("{}")
    with pytest.raises(NotADirectoryError, match=r"Data path '.*corpus.json' is a file; give a corpus"):
        discover_datasets(tmp_path / "corpus.json")


def test_a_file_that_is_no_image_is_refused_by_the_processor_naming_the_argument(tmp_path):
    from unipose.testing import tiny_processor

    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(ValueError, match=r"`images\[0\]` is the path '.*notes.png', which is not an image"):
        tiny_processor()(text=["<image>"], images=[str(tmp_path / "notes.png")])
