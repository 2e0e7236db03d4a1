"""Run under torchrun by test_train.py: trains with DDP and saves this rank's weights."""

import sys

import numpy as np
import torch.distributed as dist
from safetensors.torch import save_file

from genpol.data.arrays import ChunkData
from genpol.train import TrainConfig, config_for_data, train

out = sys.argv[1]
rng = np.random.default_rng(0)
data = ChunkData(rng.normal(size=(64, 3)), rng.normal(size=(64, 4, 2)))
cfg = config_for_data("mse", data, hidden_dim=32)
result = train(cfg, data, TrainConfig(steps=20, batch_size=8, device="cpu", progress=False),
               out_dir=f"{out}/ckpt")
rank = dist.get_rank()
save_file({k: v.contiguous() for k, v in result.policy.state_dict().items()},
          f"{out}/rank{rank}.safetensors", metadata={"world_size": str(result.world_size)})
dist.destroy_process_group()
