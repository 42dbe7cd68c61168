"""PyTorch peer for the GPU check: median training-step time (ms) of the MLP 784-512-512-10,
batch 256, float32, RMSprop, forward+backward+optimizer step, device synchronized."""
import time

import torch

torch.manual_seed(0)
dev = "cuda"
model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 10)).to(dev)
opt = torch.optim.RMSprop(model.parameters(), lr=1e-3, alpha=0.9, eps=1e-7)
x = torch.rand(256, 784, device=dev)
y = torch.randint(0, 10, (256,), device=dev)
loss_fn = torch.nn.CrossEntropyLoss()


def step():
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(model(x), y)
    loss.backward()
    opt.step()


for _ in range(10):
    step()
torch.cuda.synchronize()
times = []
for _ in range(60):
    t = time.perf_counter()
    step()
    torch.cuda.synchronize()
    times.append((time.perf_counter() - t) * 1e3)
times.sort()
print(f"step_ms torch mlp {times[30]:.3f}")
print("device", torch.cuda.get_device_name(0), "torch", torch.__version__)
