# Produces the expected parameter values hard-coded in tests/losses_optim.rs (run with the
# benchmark venv: .bench-venv/bin/python stages/nn3d/tests/oracle/torch_optim_oracle.py). PyTorch 2.15 CPU.
import torch
torch.set_default_dtype(torch.float64)
p0 = [0.5, -1.25, 2.0]
c = [0.3, -0.7, 1.1]
def run(make, lrs):
    p = torch.tensor(p0, requires_grad=True)
    opt = make([p])
    for lr in lrs:
        for g in opt.param_groups: g['lr'] = lr
        opt.zero_grad()
        loss = (p * torch.tensor(c)).sum() + 0.5 * (p ** 2 * torch.tensor([1.0, 2.0, 3.0])).sum()
        loss.backward()
        opt.step()
    return p.detach().tolist()
lrs = [0.01, 0.009, 0.008, 0.007, 0.006]
print("sgd", run(lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.99, nesterov=True, weight_decay=3e-5), lrs))
print("adam_ams", run(lambda ps: torch.optim.Adam(ps, lr=0.01, weight_decay=3e-5, amsgrad=True), lrs))
print("adamw", run(lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=0.1), lrs))
