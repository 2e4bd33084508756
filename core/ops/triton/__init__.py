"""Run Triton with the lip-sync model repository: the ``avaluma triton`` and ``avaluma models`` commands."""
