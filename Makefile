# One-command entry points. Everything runs inside .venv, created on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
SEEDS  ?= 1 2 3

.PHONY: setup demo test lint bench bench-pg bench-trpo bench-dppo bench-a3c bench-acer bench-offpolicy bench-offpolicy-mujoco bench-her bench-diayn bench-pong bench-offline bench-ppo-mujoco bench-dqn bench-c51 bench-d4pg bench-fundamentals bench-d2l bench-transformer bench-swin bench-vit clean distclean

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	@touch $(STAMP)

setup: $(STAMP) ## create .venv and install everything (only when requirements change)

demo: setup ## train DQN on CartPole-v1 until solved (mean greedy return >= 475)
	$(BIN)/python classic_rl/dqn/train.py --env-id CartPole-v1 --seed 1 --target-return 475

lint: setup
	$(BIN)/ruff check .

test: setup lint ## lint + the whole test suite, one worker per core (pytest-xdist; ~15 min on 2 cores)
	$(BIN)/python -m pytest -n auto

bench-dqn: setup ## DQN benchmarks (~1 h on 2 cores): writes benchmarks/results/<suite>/
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite dqn-cartpole --suite dqn-variants \
		--suite dqn-pendulum --suite dqn-lunarlander --suite dqn-mountaincar

bench-c51: setup ## C51 on CartPole-v1 beside sb3-contrib's QR-DQN (~35 min), then LunarLander-v3 (~40 min per seed)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite c51-cartpole
	$(BIN)/python distributional_rl/c51/plot_distributions.py --run benchmarks/results/c51-cartpole/runs/CartPole-v1__c51__1 \
		--out distributional_rl/c51/figures/distributions.png
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite c51-lunarlander

bench-d4pg: setup ## D4PG on Pendulum-v1 (seeds, ~15 min), env steps/s with 1, 2 and 4 Ray explorers (~15 min), Hopper-v5 100k (~20 min)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite d4pg-pendulum
	$(BIN)/python benchmarks/run.py --seeds 1 --suite d4pg-actors --suite d4pg-collect
	$(BIN)/python benchmarks/run.py --seeds 1 --suite d4pg-hopper

bench-pg: setup ## REINFORCE, Actor-Critic, A2C, PPO (+ SB3 side by side) on CartPole, Pendulum, LunarLander (~1.5 h)
	# PPO vs SB3 over 10 seeds: the time to solve spreads 4k-29k steps for both, so 3 seeds measure mostly luck
	$(BIN)/python benchmarks/run.py --seeds 1 2 3 4 5 6 7 8 9 10 --jobs 2 --suite ppo-cartpole
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite a2c-cartpole
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite pg-cartpole --suite ppo-pendulum --suite ppo-lunarlander
	$(BIN)/python benchmarks/acting_speed.py --env-id CartPole-v1 --num-envs 8

bench-trpo: setup ## TRPO on CartPole-v1 beside sb3-contrib's TRPO (~5 min), Pendulum-v1 (~4 min), LunarLanderContinuous-v3 (~8 min)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite trpo-cartpole
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite trpo-pendulum --suite trpo-lunarlander-continuous

bench-dppo: setup ## DPPO (2 Ray workers) on CartPole-v1 (~6 min), env steps/s with 1, 2 and 4 workers on Hopper-v5
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite dppo-cartpole
	$(BIN)/python benchmarks/run.py --seeds 1 --suite dppo-workers

bench-a3c: setup ## A3C on CartPole-v1 with 1 and 2 Hogwild workers, to the first evaluation >= 475 (x 3 seeds, ~3 min)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite a3c-cartpole

bench-acer: setup ## ACER on CartPole-v1 (300k steps, ~2 min a seed), LunarLander-v3 with and without the trust region (1M, ~5 min a run)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite acer-cartpole --suite acer-lunarlander
	cp benchmarks/results/acer-cartpole/curves.png classic_rl/acer/figures/cartpole_trust_region.png
	cp benchmarks/results/acer-lunarlander/curves.png classic_rl/acer/figures/lunarlander_trust_region.png

bench-offpolicy: setup ## DDPG, TD3, SAC (+ SB3's SAC) on Pendulum-v1, 20k steps; discrete SAC on CartPole (x 3 seeds, ~35 min)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite offpolicy-pendulum
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite sac-discrete-cartpole
	$(BIN)/python benchmarks/update_speed.py | tee benchmarks/results/update_speed.md

bench-offpolicy-mujoco: setup ## TD3 and SAC (then SB3's) on Hopper-v5, 100k steps x 3 seeds (~25 min per seed and suite on 2 cores)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite offpolicy-hopper
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --jobs 2 --suite offpolicy-hopper-sb3

bench-her: setup ## DQN+HER vs DQN on 15-bit flipping (60k, ~4 min a run), DDPG+HER vs DDPG on FetchReach-v4 (20k, ~4 min a run), 3 seeds
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite her-bitflip
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite her-fetchreach
	cp benchmarks/results/her-fetchreach/curves.png classic_rl/her/figures/fetchreach_3seeds.png

PONG_1H = --time-budget 60 --total-timesteps 5000000 --seed 1 --runs-dir benchmarks/results/pong-1h/runs
bench-pong: setup ## Pong: the memory task (CartPoleNoVelocity-v1, transformer vs MLP x 3 seeds, one run at a time, ~12 min), then PPO-cnn and PPO-transformer on Pong, 1 h of CPU each, side by side (~65 min)
	for s in 1 2 3; do for b in transformer mlp; do $(BIN)/python classic_rl/pong/train.py --env-id CartPoleNoVelocity-v1 \
		--backbone $$b --seed $$s --runs-dir benchmarks/results/pong-memory/runs || exit 1; done; done
	$(BIN)/python classic_rl/pong/plot_memory_task.py classic_rl/pong/figures/memory_task.png \
		"transformer=benchmarks/results/pong-memory/runs/*transformer*" "mlp=benchmarks/results/pong-memory/runs/*mlp*"
	$(BIN)/python classic_rl/pong/train.py --backbone cnn $(PONG_1H) & \
		$(BIN)/python classic_rl/pong/train.py --backbone transformer $(PONG_1H); wait
	$(BIN)/python rl_utils.py plot benchmarks/results/pong-1h/runs/* --out classic_rl/pong/figures/pong_ppo_cnn_vs_transformer_1h_cpu.png \
		--title "PPO on ALE/Pong-v5, 1 h of CPU each (seed 1, greedy eval)"

bench-diayn: setup ## DIAYN, 8 skills: Navigation2D-v0 20k steps x 3 seeds (5-10 min a run), Pendulum-v1 20k (~7 min), HalfCheetah-v5 30k (~8 min), on 2 CPU cores
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite diayn
	$(BIN)/python benchmarks/run.py --seeds 1 --suite diayn-pendulum --suite diayn-halfcheetah
	cp benchmarks/results/diayn/curves.png classic_rl/diayn/figures/nav2d_accuracy_3seeds.png
	cp benchmarks/results/diayn/runs/Navigation2D-v0__diayn__1/skills.png classic_rl/diayn/figures/nav2d_skills_seed1.png
	cp benchmarks/results/diayn-pendulum/runs/Pendulum-v1__diayn__1/skills.png classic_rl/diayn/figures/pendulum_skills_seed1.png
	cp benchmarks/results/diayn-halfcheetah/runs/HalfCheetah-v5__diayn__1/skills.png classic_rl/diayn/figures/halfcheetah_skills_seed1.png

OFFLINE_SOURCE ?= runs/hopper_sac_expert_s1
OFFLINE_STEPS ?= 20000
bench-offline: setup ## offline RL: SAC Hopper-v5 behaviour run (200k, 45-90 min), its datasets (~10 min), then ours (AWAC, BC, BCQ) and d3rlpy's (AWAC, BC, BCQ) on hopper-medium and -medium-replay, OFFLINE_STEPS gradient steps each (~4 h a seed on 2 CPU cores: BCQ's are the slow ones)
	test -d $(OFFLINE_SOURCE) || $(BIN)/python classic_rl/sac/train.py --env-id Hopper-v5 --seed 1 --total-timesteps 200000 --checkpoint-every 10000 --save-buffer --runs-dir $(dir $(OFFLINE_SOURCE)) --run-name $(notdir $(OFFLINE_SOURCE))
	$(BIN)/python offline_rl/make_datasets.py --source $(OFFLINE_SOURCE)
	for seed in $(SEEDS); do for data in medium medium-replay; do \
	  $(BIN)/python offline_rl/awac/train.py --dataset offline_rl/data/hopper-$$data.hdf5 --offline-steps $(OFFLINE_STEPS) --seed $$seed --runs-dir runs/offline; \
	  $(BIN)/python offline_rl/awac/train.py --dataset offline_rl/data/hopper-$$data.hdf5 --offline-steps $(OFFLINE_STEPS) --weighting none --seed $$seed --runs-dir runs/offline; \
	  $(BIN)/python benchmarks/d3rlpy_baseline.py --algo awac --dataset offline_rl/data/hopper-$$data.hdf5 --total-timesteps $(OFFLINE_STEPS) --seed $$seed --runs-dir runs/offline; \
	  $(BIN)/python benchmarks/d3rlpy_baseline.py --algo bc --dataset offline_rl/data/hopper-$$data.hdf5 --total-timesteps $(OFFLINE_STEPS) --seed $$seed --runs-dir runs/offline; \
	  $(BIN)/python offline_rl/bcq/train.py --dataset offline_rl/data/hopper-$$data.hdf5 --offline-steps $(OFFLINE_STEPS) --seed $$seed --runs-dir runs/offline; \
	  $(BIN)/python benchmarks/d3rlpy_baseline.py --algo bcq --dataset offline_rl/data/hopper-$$data.hdf5 --total-timesteps $(OFFLINE_STEPS) --seed $$seed --runs-dir runs/offline; \
	done; done

bench-ppo-mujoco: setup ## PPO on Hopper-v5, 1M steps x 3 seeds (~1 h per seed on 2 CPU cores)
	$(BIN)/python benchmarks/run.py --seeds $(SEEDS) --suite ppo-hopper

bench-fundamentals: setup ## bandits, DP, tabular TD (~3 min): README tables and figures
	$(BIN)/python classic_rl/bandits/train.py --seeds 20 --figures-dir classic_rl/bandits/figures
	$(BIN)/python classic_rl/dynamic_programming/bench.py --figures-dir classic_rl/dynamic_programming/figures
	$(BIN)/python classic_rl/tabular/example_6_6.py --runs 50 --episodes 500 --figures-dir classic_rl/tabular/figures
	$(BIN)/python classic_rl/tabular/success_rates.py

bench-d2l: setup ## every d2l CNN on MNIST-5000 (~25 min): README table and figures
	$(BIN)/python d2l_notes/bench.py

bench-transformer: setup ## date/copy/reverse tasks, beam search, tokens/s vs nn.Transformer (~25 min)
	$(BIN)/python transformer_basic/train.py --run-name date
	$(BIN)/python transformer_basic/train.py --task copy --run-name copy
	$(BIN)/python transformer_basic/train.py --task reverse --run-name reverse
	$(BIN)/python transformer_basic/translate.py --checkpoint runs/date/ckpt/best.pt --eval-split test --beam-size 4
	$(BIN)/python transformer_basic/bench_speed.py
	$(BIN)/python transformer_basic/bench_speed.py --dropout 0

bench-swin: setup ## Swin on MNIST-5000 (3 seeds, ~35 min), figures, training speed vs timm
	for s in $(SEEDS); do $(BIN)/python swin_transformer/train.py --seed $$s --run-name swin_mnist5k_$$s || exit 1; done
	$(BIN)/python swin_transformer/visualize.py --checkpoint runs/swin_mnist5k_1/ckpt/best.pt --out-dir swin_transformer/figures
	$(BIN)/python swin_transformer/bench_speed.py
	$(BIN)/python swin_transformer/bench_speed.py --config tiny --batch-size 8 --repeats 5 --warmup 1

bench-vit: setup ## ViT: MNIST-5000 from scratch, digits, fine-tuning demo, rollout figures, speed vs timm (~20 min)
	$(BIN)/python vit/train.py --run-name vit_mnist5k_main
	cp runs/vit_mnist5k_main/learning_curve.png vit/figures/learning_curve_mnist5k.png
	cp runs/vit_mnist5k_main/confusion_matrix.png vit/figures/confusion_matrix_mnist5k.png
	$(BIN)/python vit/train.py --dataset digits --run-name vit_digits
	$(BIN)/python vit/finetune.py --pretrained runs/vit_mnist5k_main/ckpt/best.pt --dataset digits --image-size 35 \
		--run-name vit_finetune_digits35
	$(BIN)/python vit/train.py --dataset digits --model vit_micro_patch7_28 --image-size 35 --epochs 13 \
		--run-name vit_scratch_digits35
	$(BIN)/python vit/visualize_attention.py --model runs/vit_mnist5k_main/ckpt/best.pt --image mnist5k \
		--out vit/figures/rollout_mnist5k.png
	$(BIN)/python vit/visualize_attention.py --random-init vit_tiny_patch16_224 --image chelsea \
		--out vit/figures/rollout_chelsea_untrained.png
	$(BIN)/python vit/bench_speed.py --out vit/figures/bench_speed.json

bench: bench-fundamentals bench-dqn bench-c51 bench-d4pg bench-pg bench-trpo bench-dppo bench-a3c bench-acer bench-offpolicy bench-offpolicy-mujoco bench-her bench-diayn bench-pong bench-offline bench-ppo-mujoco bench-d2l bench-transformer bench-swin bench-vit ## every benchmark whose numbers appear in a README

clean: ## remove runs, caches and build leftovers (keeps .venv)
	rm -rf runs .pytest_cache .ruff_cache .hypothesis *.egg-info
	find . -name __pycache__ -not -path './.venv/*' -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
