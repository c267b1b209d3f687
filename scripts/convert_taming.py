"""Convert a taming-transformers VQGAN checkpoint (``last.ckpt`` + its YAML) to a twostage model
folder: ``config.json`` + ``model.safetensors`` (+ the ``discriminator/`` model folder).

    python scripts/convert_taming.py --checkpoint last.ckpt --config model.yaml --output DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.cli import run_main
from shared.pretrained import load_state
from shared.run import RunError
from stage1_vqgan.discriminator import DISCRIMINATOR_FOLDER, PatchDiscriminator
from stage1_vqgan.taming import load_taming_vqgan, taming_config_path, taming_model_config


def convert(checkpoint: str, config: str | None, output: str, overwrite: bool = False) -> Path:
    out = Path(output)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RunError(f"{out} already exists and is not empty; pass --overwrite")
    config_path = taming_config_path(checkpoint, config)
    model, disc_state = load_taming_vqgan(checkpoint, config_path)
    model.save_pretrained(out)
    if disc_state is not None:
        disc = PatchDiscriminator(**taming_model_config(config_path)[1])
        load_state(disc, disc_state, f"{checkpoint} (discriminator)")
        disc.save_pretrained(out / DISCRIMINATOR_FOLDER)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="taming last.ckpt")
    p.add_argument("--config", help="taming YAML (default: found in logs/RUN/configs/)")
    p.add_argument("--output", required=True, help="model folder to write")
    p.add_argument("--overwrite", action="store_true")
    args = p.parse_args(argv)
    out = convert(args.checkpoint, args.config, args.output, args.overwrite)
    print(f"wrote {out} (load it with stage1_vqgan.load_tokenizer or --checkpoint {out})")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main, prog="convert_taming"))
