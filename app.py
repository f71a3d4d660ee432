"""UniPose web demo: the seven tasks on one page (Gradio). The entry point of a Hugging Face Space.

    python app.py                                # the bundled model on http://127.0.0.1:7860
    python app.py --model path/or/owner-id --port 8080
    UNIPOSE_MODEL=owner/unipose python app.py    # how a Space picks its model (a variable of the Space)

This is `unipose app` (`unipose/app.py`) run as a script, with the same arguments and one-line errors.
`spaces/README.md` says how to publish it as a Space.
"""

import sys

from unipose.cli import main

if __name__ == "__main__":
    sys.exit(main(["app", *sys.argv[1:]]))
