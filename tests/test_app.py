"""The web demo (`unipose app`): its pure parts without a browser, then the page itself in headless Chromium.

The browser test serves the page on a free localhost port from this process and drives it with Selenium
through Debian's `chromium` and `chromedriver` (`.ci/run` installs them); it skips only where they are not
found.
Its screenshots are left in the test's tmp folder.
"""

import json
import re
import shutil
import socket
import time
import urllib.request
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
import torch

from unipose.app import (
    TASK_INPUTS,
    VIEW_BACKGROUND,
    AppModel,
    bundled_pose,
    read_glb,
    read_pose_file,
    save_glb,
    side_by_side,
    task_inputs,
)
from unipose.cli import main
from unipose.demo import DEFAULT_MODEL
from unipose.files import resolve_model_path
from unipose.rotations import axis_angle_to_matrix, axis_angle_to_rotation_6d, to_rotation_6d

ROOT = Path(__file__).resolve().parents[1]
NUM_VERTICES = 6890  # the SMPL-H mesh, which the generated body copies


def _pose(seed: int = 0) -> np.ndarray:
    """A random body pose, axis-angle `(22, 3)`."""
    return (torch.randn(22, 3, generator=torch.Generator().manual_seed(seed)) * 0.4).numpy()


# ---------------------------------------------------------------------------------------------------------
# Pose files
# ---------------------------------------------------------------------------------------------------------


def _write(path: Path, pose) -> Path:
    if path.suffix == ".npz":
        np.savez(path, pose=pose)
    elif path.suffix == ".npy":
        np.save(path, pose)
    else:
        path.write_text(json.dumps(pose))
    return path


@pytest.mark.parametrize(
    "name, make",
    [
        ("axis_angle.npz", lambda pose: pose),
        ("flat.npz", lambda pose: pose.reshape(66)),
        ("batch_of_one.npz", lambda pose: pose[None]),
        ("matrices.npy", lambda pose: axis_angle_to_matrix(torch.from_numpy(pose)).numpy()),
        ("six_d.npy", lambda pose: axis_angle_to_rotation_6d(torch.from_numpy(pose)).numpy()),
        ("list.json", lambda pose: pose.tolist()),
        ("object.json", lambda pose: {"pose": pose.reshape(66).tolist()}),
    ],
)
def test_a_pose_file_in_any_format_reads_as_the_poses_6d(tmp_path, name, make):
    pose = _pose()
    read = read_pose_file(_write(tmp_path / name, make(pose)))
    assert read.shape == (22, 6) and read.dtype == np.float32
    np.testing.assert_allclose(read, to_rotation_6d(pose)[0].numpy(), atol=1e-6)


def test_an_npz_whose_only_array_has_another_name_is_read(tmp_path):
    np.savez(tmp_path / "pose.npz", poses=_pose())
    np.testing.assert_allclose(
        read_pose_file(tmp_path / "pose.npz"), to_rotation_6d(_pose())[0].numpy(), atol=1e-6
    )


def _not_a_rotation():
    matrices = axis_angle_to_matrix(torch.from_numpy(_pose())).numpy()
    matrices[5] *= 2.0
    return matrices


@pytest.mark.parametrize(
    "name, content, error, message",
    [
        ("pose.txt", "0 0 0", ValueError, "is not a pose file: expected .npz, .npy, .json"),
        (
            "shape.npy",
            np.zeros((22, 4)),
            ValueError,
            r"has shape \(22, 4\), which is no pose layout for 22 joints",
        ),
        ("nan.npz", np.full((22, 3), np.nan), ValueError, "NaN or infinite"),
        (
            "scaled.npy",
            _not_a_rotation(),
            ValueError,
            "holds a matrix that is not a rotation: at pose 0, joint 5",
        ),
        ("two.npy", np.zeros((2, 22, 3)), ValueError, "holds 2 poses; one pose per file is read"),
        ("broken.json", "[[0, 0,", ValueError, "is not valid JSON"),
        ("keys.json", '{"poses": []}', ValueError, 'no "pose"'),
        ("number.json", "3", ValueError, "holds a JSON int; expected a nested list of numbers"),
        ("words.json", '[["a", "b", "c"]]', TypeError, "must hold real numbers"),
        ("corrupt.npz", b"PK\x03\x04 not really a zip", ValueError, "is not a readable .npz archive"),
        ("pickled.npy", np.array([{"pose": 1}], dtype=object), ValueError, "is not a readable .npy array"),
    ],
)
def test_a_bad_pose_file_raises_a_message_that_says_what_is_wrong(tmp_path, name, content, error, message):
    path = tmp_path / name
    if isinstance(content, np.ndarray) and path.suffix == ".npy":
        np.save(path, content, allow_pickle=True)
    elif isinstance(content, np.ndarray):
        np.savez(path, pose=content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    with pytest.raises(error, match=message):
        read_pose_file(path)


def test_an_npz_without_a_pose_array_names_the_arrays_it_has(tmp_path):
    np.savez(tmp_path / "pair.npz", pose_a=_pose(0), pose_b=_pose(1))
    with pytest.raises(ValueError, match=r"holds the arrays \['pose_a', 'pose_b'\] but none named `pose`"):
        read_pose_file(tmp_path / "pair.npz")


def test_a_missing_pose_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz does not exist"):
        read_pose_file(tmp_path / "nothing.npz")


def test_the_bundled_poses_are_the_demos():
    archive = np.load(ROOT / "unipose" / "demo_assets" / "poses.npz")
    np.testing.assert_allclose(bundled_pose("Bundled pose B"), to_rotation_6d(archive["pose_b"])[0].numpy())
    with pytest.raises(ValueError, match="There is no bundled pose 'pose C'"):
        bundled_pose("pose C")


# ---------------------------------------------------------------------------------------------------------
# Task inputs
# ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "task, message",
    [
        (
            "pose_to_text",
            "Pose-to-Text needs pose A: upload a pose file for pose A or pick a bundled example.",
        ),
        ("pose_diff", "Pose-Diff needs pose A and pose B: upload a pose file for pose A or pick"),
        ("image_diff", "Image-Diff needs image A and image B: upload image A; upload image B."),
        ("text_to_pose", "Text-to-Pose needs a description: type a description of the pose."),
        ("pose_editing", "Pose Editing needs pose A and an instruction: "),
    ],
)
def test_a_task_without_its_inputs_says_which_are_missing_and_where_to_give_them(task, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        task_inputs(task, description="   ")


def test_a_task_passes_on_only_the_inputs_it_reads():
    from PIL import Image

    image = Image.new("RGBA", (32, 32))
    pose = to_rotation_6d(_pose())[0].numpy()
    inputs = task_inputs(
        "pose_editing", image, image, pose, pose, "a description", "  Raise   the left arm. "
    )
    assert inputs["pose_a"] is pose and inputs["instruction"] == "Raise the left arm."
    assert inputs["pose_b"] is None and inputs["image_a"] is None and inputs["caption"] is None
    assert task_inputs("image_to_text", image_a=image)["image_a"].mode == "RGB"


def test_unknown_tasks_and_overlong_texts_are_refused():
    from PIL import Image

    with pytest.raises(ValueError, match="Unknown task 'pose_to_dance'"):
        task_inputs("pose_to_dance")
    with pytest.raises(
        ValueError, match="The description is 2001 characters long; the app takes at most 2000"
    ):
        task_inputs("text_to_pose", description="a" * 2001)
    # A text the task does not read is not looked at.
    assert (
        task_inputs("image_to_text", image_a=Image.new("RGB", (8, 8)), description="a" * 2001)["caption"]
        is None
    )


def test_a_missing_checkpoint_is_named_with_the_option_to_change(tmp_path, capsys):
    missing = r"`--model` '.*nothing' does not exist: expected a checkpoint folder"
    with pytest.raises(FileNotFoundError, match=missing):
        resolve_model_path(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match=r"`--model` '.*' has no config.json"):
        resolve_model_path(tmp_path)
    with pytest.raises(FileNotFoundError, match=r"`--model` './out' does not exist"):
        resolve_model_path("./out")
    assert resolve_model_path("owner/unipose") == "owner/unipose"  # a Hub id goes to from_pretrained as it is
    # `unipose app` (and `python app.py`, which runs it) reports it as one line, before serving anything.
    assert main(["app", "--model", str(tmp_path / "nothing")]) == 1
    assert "unipose app: error: FileNotFoundError: `--model` " in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# Answers and their files
# ---------------------------------------------------------------------------------------------------------


def test_save_glb_writes_a_valid_binary_gltf_of_the_mesh(tmp_path):
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=np.float32)
    faces = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])
    path = save_glb(vertices, faces, tmp_path / "tetrahedron.glb")
    data = path.read_bytes()
    # The GLB header and chunk layout of the glTF 2.0 specification: 12-byte header, then JSON and BIN chunks,
    # each 4-byte aligned.
    assert data[:4] == b"glTF" and int.from_bytes(data[4:8], "little") == 2
    assert int.from_bytes(data[8:12], "little") == len(data) and len(data) % 4 == 0
    json_length = int.from_bytes(data[12:16], "little")
    assert (
        data[16:20] == b"JSON"
        and json_length % 4 == 0
        and data[20 + json_length + 4 : 20 + json_length + 8] == b"BIN\0"
    )
    document = json.loads(data[20 : 20 + json_length])
    assert document["asset"]["version"] == "2.0"
    assert document["accessors"][0]["min"] == [0, 0, 0] and document["accessors"][0]["max"] == [1, 1, 1]
    mesh = read_glb(path)
    np.testing.assert_array_equal(mesh["vertices"], vertices)
    np.testing.assert_array_equal(mesh["faces"], faces)
    np.testing.assert_allclose(np.linalg.norm(mesh["normals"], axis=1), 1.0, atol=1e-6)
    # Faces wind counter-clockwise seen from outside, so every normal points away from the centre.
    assert (np.sum(mesh["normals"] * (vertices - vertices.mean(0)), axis=1) > 0).all()


def test_bodies_of_one_answer_stand_side_by_side():
    vertices = np.zeros((3, 4, 3))
    faces = np.array([[0, 1, 2], [1, 2, 3]])
    all_vertices, all_faces = side_by_side(vertices, faces, spacing=1.0)
    assert all_vertices.shape == (12, 3) and all_faces.shape == (6, 3)
    np.testing.assert_array_equal(all_vertices[::4, 0], [-1.0, 0.0, 1.0])
    np.testing.assert_array_equal(all_faces[2:4], faces + 4)


def test_the_app_answers_a_text_task_and_a_pose_task_and_writes_the_pose_files(checkpoint, tmp_path):
    app = AppModel(checkpoint, max_new_tokens=8)
    text = app.answer("pose_to_text", task_inputs("pose_to_text", pose_a=bundled_pose("Bundled pose A")))
    assert text.poses.shape == (0, 22, 3) and "Describe" in text.prompt
    assert app.write_answer(text, tmp_path / "text").view is None

    pose = app.answer("text_to_pose", task_inputs("text_to_pose", description="A person kneeling."))
    assert pose.poses.shape == (1, 22, 3) and "A person kneeling." in pose.prompt
    files = app.write_answer(pose, tmp_path / "pose")
    assert [path.name for path in files.downloads] == ["text_to_pose_pose.npz", "text_to_pose_pose.obj"]
    np.testing.assert_array_equal(np.load(files.downloads[0])["pose"], pose.poses[0])
    obj = [line.split() for line in files.downloads[1].read_text().splitlines()]
    obj_vertices = np.array([line[1:] for line in obj if line[0] == "v"], dtype=np.float32)
    assert len(obj_vertices) == NUM_VERTICES
    np.testing.assert_allclose(read_glb(files.view)["vertices"], obj_vertices, atol=1e-5)
    assert files.render.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_every_task_is_answered_from_the_inputs_it_reads(checkpoint, tmp_path):
    from PIL import Image

    app = AppModel(checkpoint, max_new_tokens=4)
    given = {
        "image_a": Image.open(ROOT / "unipose/demo_assets/image_a.jpg"),
        "image_b": Image.open(ROOT / "unipose/demo_assets/image_b.jpg"),
        "pose_a": bundled_pose("Bundled pose A"),
        "pose_b": bundled_pose("Bundled pose B"),
        "description": "A person kneeling.",
        "instruction": "Raise the left arm.",
    }
    for task, reads in TASK_INPUTS.items():
        answer = app.answer(task, task_inputs(task, **{name: given[name] for name in reads}))
        media = answer.prompt.count("<image>") + answer.prompt.count("<pose>")
        assert media == sum(name.startswith(("image", "pose")) for name in reads), task
        if task in ("text_to_pose", "pose_estimation", "pose_editing"):
            assert answer.poses.shape == (1, 22, 3), (
                task
            )  # the prompt opens the pose: exactly one, in one step


def test_control_tokens_typed_by_a_visitor_are_text(checkpoint):
    app = AppModel(checkpoint, max_new_tokens=4)
    typed = "A person kneeling <image> <pose_query> <p> <pose_7> </p>."
    answer = app.answer("text_to_pose", task_inputs("text_to_pose", description=typed))
    assert answer.poses.shape == (1, 22, 3) and typed in answer.prompt
    edit = app.answer(
        "pose_editing",
        task_inputs(
            "pose_editing", pose_a=bundled_pose("Bundled pose A"), instruction="Raise <pose> the arm."
        ),
    )
    assert edit.poses.shape == (1, 22, 3) and "Raise <pose> the arm." in edit.prompt


def test_a_prompt_longer_than_the_models_context_is_refused(checkpoint):
    app = AppModel(checkpoint, max_new_tokens=1_000_000)
    with pytest.raises(ValueError, match="more than the model's context of .* tokens: shorten the text"):
        app.answer("text_to_pose", task_inputs("text_to_pose", description="A person kneeling."))


def test_the_space_installs_what_the_package_needs():
    tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in ("app", "demo"):
        wanted |= {spec for spec in project["optional-dependencies"][extra] if not spec.startswith("unipose")}
    lines = (ROOT / "spaces" / "requirements.txt").read_text().splitlines()
    assert {line for line in lines if line and not line.startswith(("#", "--"))} == wanted
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in lines  # CPU torch, not PyPI's CUDA build
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(ROOT / "spaces" / "README.md").data
    assert (card.sdk, card.app_file) == ("gradio", "app.py")
    assert len(card.short_description) <= 60  # the Hub refuses a longer one


# ---------------------------------------------------------------------------------------------------------
# The page in a browser
# ---------------------------------------------------------------------------------------------------------

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1300",
)
WAIT_SECONDS = 60


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _fetch(url: str) -> bytes:
    # The page is on this machine: no proxy, whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=30) as response:
        return response.read()


@pytest.fixture(scope="module")
def served(tmp_path_factory, checkpoint):
    """The page, served from this process; the bundled model where the checkout has it."""
    from unipose.app import build_app, launch

    model = DEFAULT_MODEL if (Path(DEFAULT_MODEL) / "config.json").is_file() else checkpoint
    app = AppModel(model).load()
    page = build_app(app, output_dir=tmp_path_factory.mktemp("answers"))
    port = _free_port()
    launch(page, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    yield app, f"http://127.0.0.1:{port}/"
    page.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "no headless Chromium found (needs `chromium` and `chromedriver` on PATH): install Debian's with "
            "`apt-get install -y chromium chromium-driver`, as .ci/run does"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS + (f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",):
        options.add_argument(flag)
    # The driver is given, so Selenium never looks for (or downloads) one of its own.
    session = webdriver.Chrome(options=options, service=Service(driver))
    yield session
    session.quit()


def _open(browser, url):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url)
    WebDriverWait(browser, WAIT_SECONDS).until(lambda page: page.find_elements(By.CSS_SELECTOR, "#run"))


def _wait(browser, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, WAIT_SECONDS, poll_frequency=0.2).until(
        condition, message=f"waiting for {what}"
    )


def _toast_texts(page) -> list[str]:
    """The texts of the error toasts shown, once they have a text."""
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By

    texts = []
    for element in page.find_elements(By.CSS_SELECTOR, ".toast-message-text"):
        try:
            text = element.text.strip()
        except StaleElementReferenceException:  # replaced while it was read
            continue
        if text:
            texts.append(text)
    return texts


def _pick_task(browser, title: str) -> None:
    from selenium.webdriver.common.by import By

    [label] = [
        label
        for label in browser.find_elements(By.CSS_SELECTOR, "#task label")
        if label.text.strip() == title
    ]
    label.click()


def _upload(browser, element_id: str, path: Path) -> None:
    from selenium.webdriver.common.by import By

    browser.find_element(By.CSS_SELECTOR, f"#{element_id} input[type=file]").send_keys(str(path))
    _wait(
        browser,
        lambda page: path.stem in page.find_element(By.CSS_SELECTOR, f"#{element_id}").text,
        f"{path.name}",
    )


def _answer_text(browser) -> str:
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, "#answer textarea").get_attribute("value")


@pytest.mark.slow
def test_the_page_in_a_browser_answers_pose_to_text_and_text_to_pose_and_shows_errors(
    served, browser, tmp_path
):
    from PIL import Image
    from selenium.webdriver.common.by import By

    app, url = served
    start = time.perf_counter()

    # 1. Pose-to-Text on an uploaded pose (bundled pose B as axis-angle JSON): the page shows the answer.
    pose_file = tmp_path / "my_pose.json"
    pose_file.write_text(
        json.dumps({"pose": np.load(ROOT / "unipose/demo_assets/poses.npz")["pose_b"].tolist()})
    )
    expected = app.answer("pose_to_text", task_inputs("pose_to_text", pose_a=read_pose_file(pose_file))).text
    expected = expected or "(a pose only)"  # what the page shows for an empty text
    _open(browser, url)
    assert "Pose-to-Text reads pose A." in browser.find_element(By.CSS_SELECTOR, "#needs").text
    _upload(browser, "pose_a_file", pose_file)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    _wait(browser, lambda page: _answer_text(page), "the answer of Pose-to-Text")
    assert _answer_text(browser) == expected
    assert "Pose-to-Text: " in browser.find_element(By.CSS_SELECTOR, "#status").text
    browser.save_screenshot(str(tmp_path / "pose_to_text.png"))

    # 2. Text-to-Pose on a typed description: the 3D view serves the body of the pose the model writes.
    description = "The person is kneeling on the left knee with both arms raised above the head."
    generated = app.answer("text_to_pose", task_inputs("text_to_pose", description=description)).poses
    _open(browser, url)
    _pick_task(browser, "Text-to-Pose")
    box = _wait(
        browser,
        lambda page: page.find_element(By.CSS_SELECTOR, "#description textarea"),
        "the description box",
    )
    box.clear()
    box.send_keys(description)
    browser.find_element(By.CSS_SELECTOR, "#run").click()
    link = _wait(
        browser,
        lambda page: page.find_elements(By.CSS_SELECTOR, "#view a[data-testid=model3d-download-link]"),
        "the 3D body",
    )[0]
    assert _answer_text(browser) == "(a pose only)"
    mesh_path = tmp_path / "served.glb"
    mesh_path.write_bytes(_fetch(link.get_attribute("href")))
    mesh = read_glb(mesh_path)
    assert mesh["vertices"].shape == (NUM_VERTICES, 3)
    np.testing.assert_allclose(
        mesh["vertices"], app.body(torch.from_numpy(generated)).vertices[0].numpy(), atol=1e-5
    )
    downloads = {
        Path(anchor.get_attribute("href")).name: anchor.get_attribute("href")
        for anchor in browser.find_elements(By.CSS_SELECTOR, "#downloads a")
    }
    assert {"text_to_pose_pose.npz", "text_to_pose_pose.obj"} <= set(downloads)
    np.testing.assert_allclose(
        np.load(BytesIO(_fetch(downloads["text_to_pose_pose.npz"])))["pose"], generated[0]
    )
    obj = _fetch(downloads["text_to_pose_pose.obj"]).decode().splitlines()
    assert sum(line.startswith("v ") for line in obj) == NUM_VERTICES
    assert browser.find_element(By.CSS_SELECTOR, "#render img").get_attribute("src")

    # The body is drawn: the 3D view's canvas shows its background colour around at least 1 % of other pixels
    # (the body covers about 3 %; the label and buttons over the canvas about 0.5 %).
    canvas = browser.find_element(By.CSS_SELECTOR, "#view canvas")
    background = 255 * np.mean(VIEW_BACKGROUND[:3])

    def body_drawn(_):
        pixels = np.asarray(Image.open(BytesIO(canvas.screenshot_as_png)).convert("L"), dtype=np.float64)
        return abs(np.median(pixels) - background) < 3 and (np.abs(pixels - background) > 12).mean() > 0.01

    _wait(browser, body_drawn, "the body in the 3D view")
    browser.save_screenshot(str(tmp_path / "text_to_pose.png"))

    # 3. A pose file that is no pose: the project's message, not a traceback.
    bad_file = tmp_path / "not_a_pose.npy"
    np.save(bad_file, np.zeros((22, 4)))
    _open(browser, url)
    browser.find_element(By.CSS_SELECTOR, "#pose_a_file input[type=file]").send_keys(str(bad_file))
    # The toast is in the page before its text: wait for the text.
    message = _wait(browser, _toast_texts, "the error")[0]
    assert message == (
        "`not_a_pose.npy` has shape (22, 4), which is no pose layout for 22 joints. Expected axis-angle "
        "(66,), (22, 3), rotation matrices (22, 3, 3) or 6D (22, 6), optionally with a leading batch axis, "
        "e.g. (B, 22, 3)."
    )
    assert "Traceback" not in browser.find_element(By.TAG_NAME, "body").text
    browser.save_screenshot(str(tmp_path / "bad_pose_file.png"))
    assert time.perf_counter() - start < 120


def test_answer_folders_go_on_numbering_in_a_root_an_earlier_page_used(tmp_path):
    from unipose.app import _AnswerFolders

    folders = _AnswerFolders(tmp_path)
    assert [folders.new().name for _ in range(2)] == ["answer-000001", "answer-000002"]
    assert _AnswerFolders(tmp_path).new().name == "answer-000003"  # a new page, the same root
