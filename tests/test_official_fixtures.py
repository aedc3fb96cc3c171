"""The golden files from the official code are byte-identical copies of ../shared/reference."""

import hashlib

from conftest import OFFICIAL

EXPECTED_SHA256 = {
    "README.md": "3d107611e7f5ceb190ef9565899379538b8fbced67c3bb1d036f47f2579562f1",
    "diffusion.safetensors": "60c484e86190fd6b8f82a10b2c1190fb558ff0a9c675f4adb14abef907940e08",
    "tiny_mmunet.json": "d705e99fda58ed08a55ba1332185e6e916b239eb9ac002b9a66458d0699bc6a1",
    "tiny_mmunet.safetensors": "374103d9e8d4f39ce5edac5c2461b8457d39c258935224977daf6e29011e5211",
    "tiny_mmunet_io.safetensors": "8b4507e60acfda3a3194f379b9e44d8a5855bafb07095a80312e489a7d89c888",
    "tiny_mmunet_io_shift.safetensors": "e2f0d92a506af3b809b2fff1966f6ca3bb472602f75684a420b2167d6bb23e26",
    "tiny_sr.json": "867a60d5893267dee900666171b23912d280addfbced610516ed601d4fa8c927",
    "tiny_sr.safetensors": "68543849c6525426c28b267604d677eda60ee8881a4d3db7e5300bcb41497ae2",
    "tiny_sr_io.safetensors": "f7e5255cb5ef4f8f75314520319dacc50531d5ec44f862d34c841c940d93c12f",
}


def test_fixture_files_are_the_official_ones():
    present = {p.name for p in OFFICIAL.iterdir()}
    assert present == set(EXPECTED_SHA256)
    for name, digest in EXPECTED_SHA256.items():
        assert hashlib.sha256((OFFICIAL / name).read_bytes()).hexdigest() == digest, name
