"""The split image's VAE decode shared row by row (studio/engine/split_decode.py): two real processes
joined over gloo decode bands of one latent and must give the one-process picture."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

WORLD = 2


def _vae() -> torch.nn.Module:
    from diffusers import AutoencoderKL

    torch.manual_seed(0)  # the same random weights in every process
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=16, norm_num_groups=8, layers_per_block=1,
                        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                        block_out_channels=(16, 32, 32))
    return vae.eval()


def _member(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    from studio.engine.split_decode import SplitDecode, decode_rows

    torch.set_num_threads(1)
    os.environ["ZAOXIANG_COMPILE_BACKEND"] = "eager"
    # a member left waiting fails within a minute instead of holding the suite
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD,
                            timeout=datetime.timedelta(seconds=60))
    try:
        vae = _vae()
        z = torch.randn(1, 16, 24, 20, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            rows = decode_rows(vae.decoder, z)
            with SplitDecode(vae).active():
                through_vae = vae.decode(z, return_dict=False)[0]  # the way the Engine decodes
                odd = vae.decode(z[:, :, :23], return_dict=False)[0]  # 23 rows: the whole decode
                vae.use_tiling = rank == 1  # one member's profile tiles: they agree, and both tile
                mixed = vae.decode(z, return_dict=False)[0]
                vae.use_tiling = False
            # compiled (dynamo traces the patched modules and the collectives; the eager backend on CPU)
            from torch._dynamo.utils import counters

            compiled = SplitDecode(vae, compiled=True)
            graphs = [int(counters["stats"]["unique_graphs"])]
            for latent in (z, z, z[:, :, :16, :12]):
                with compiled.active():
                    last = vae.decode(latent, return_dict=False)[0]
                graphs.append(int(counters["stats"]["unique_graphs"]))
        torch.save({"rows": rows, "vae": through_vae, "odd": odd, "forward": "forward" in vae.decoder.__dict__ or "decode" in vae.__dict__,
                    "compiled_small": last, "graphs": graphs,
                    "mixed": mixed}, f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _middle(rank: int, port: int, out: str) -> None:
    """Three members: the middle band has neighbours on both sides."""
    import torch.distributed as dist

    from studio.engine.split_decode import decode_rows

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=3)
    try:
        z = torch.randn(1, 16, 24, 20, generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            torch.save(decode_rows(_vae().decoder, z), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bands(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    out = tmp_path_factory.mktemp("bands")
    mp.spawn(_member, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    vae = _vae()
    z = torch.randn(1, 16, 24, 20, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        whole = {"rows": vae.decoder(z), "vae": vae.decode(z, return_dict=False)[0],
                 "odd": vae.decode(z[:, :, :23], return_dict=False)[0],
                 "compiled_small": vae.decode(z[:, :, :16, :12], return_dict=False)[0]}
        vae.use_tiling = True
        whole["mixed"] = vae.decode(z, return_dict=False)[0]
    return whole, {r: torch.load(Path(out) / f"{r}.pt") for r in range(WORLD)}


def test_bands_give_the_one_process_picture(bands) -> None:
    whole, got = bands
    for r in range(WORLD):
        assert torch.allclose(got[r]["compiled_small"], whole["compiled_small"], atol=2e-5, rtol=1e-4)
        # the first shape compiles once; the same shape again compiles nothing, and another shape runs the
        # same bands eagerly (never a compile a person waits for after the group's warm-up)
        before, first, again, other = got[r]["graphs"]
        assert first > before and again == first and other == again, got[r]["graphs"]
        for key in ("rows", "vae"):  # the decoder alone, and the VAE's decode as the Engine calls it
            assert whole[key].shape == got[r][key].shape == (1, 3, 96, 80)
            assert torch.allclose(got[r][key], whole[key], atol=2e-5, rtol=1e-4), \
                (r, key, (got[r][key] - whole[key]).abs().max())
    # not trivially equal: the bands differ from one another, so both members did their share
    assert (whole["rows"][:, :, :48] - whole["rows"][:, :, 48:]).abs().max() > 1e-2


def test_a_latent_that_does_not_split_evenly_is_decoded_whole(bands) -> None:
    whole, got = bands
    for r in range(WORLD):
        assert torch.allclose(got[r]["odd"], whole["odd"], atol=1e-6)  # the same decode (thread counts differ)
        assert got[r]["forward"] is False  # the decoder's forward and the VAE's decode are back after the split


def test_bands_fit() -> None:
    from studio.engine.split_decode import bands_fit

    assert bands_fit(128, 2) and bands_fit(256, 4) and not bands_fit(127, 2) and not bands_fit(6, 2)
    assert not bands_fit(128, 1)


def test_three_bands_give_the_one_process_picture(bands, tmp_path: Path) -> None:
    whole, _ = bands
    mp.spawn(_middle, args=(_free_port(), str(tmp_path)), nprocs=3, join=True)
    for r in range(3):
        got = torch.load(tmp_path / f"{r}.pt")
        assert torch.allclose(got, whole["rows"], atol=2e-5, rtol=1e-4), (r, (got - whole["rows"]).abs().max())


def test_margins_of_the_flux_decoder() -> None:
    """The full-size layout: a band's margins are a few rows, renewed once per resolution."""
    from diffusers import AutoencoderKL

    from studio.engine.split_decode import Bands
    from studio.models.architecture import FULL

    with torch.device("meta"):
        decoder = AutoencoderKL(**FULL.vae).decoder
    first, middle = Bands(decoder, 0, 2, None), Bands(decoder, 1, 3, None)
    # the latent band: conv_in and the first ResNet spoil 3 rows; the picture: 8 of 1024 at 2048²
    assert (first.first, first.last, first.min_rows) == (3, 8, 8)
    assert first.member.margins(8) == (0, 8) and middle.member.margins(8) == (8, 8)
    assert first.fit(128) and first.fit(256) and not first.fit(14) and not first.fit(127)
    renewals = [module for module, _ in first.patches if not isinstance(module, torch.nn.GroupNorm)
                and type(module).__name__ in ("Attention", "Upsample2D")]
    assert len(renewals) == 4  # after the attention, before each of three upsamplers


def test_members_that_differ_on_tiling_all_tile(bands) -> None:
    """A member on a lower memory profile tiles its decode; the others follow rather than wait for it."""
    whole, got = bands
    assert not torch.allclose(whole["mixed"], whole["vae"], atol=1e-3)  # the tiny VAE really tiles here
    for r in range(WORLD):
        assert torch.allclose(got[r]["mixed"], whole["mixed"], atol=2e-5, rtol=1e-4), r
