"""Operations tooling that runs beside the server (today: NVIDIA Triton)."""
