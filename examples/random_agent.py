"""A Gymnasium loop: the identity agent and the reference agent on Quill-v1."""

import gymnasium as gym

import quill_env  # noqa: F401  (registers the environments)

env = gym.make("Quill-v1", scale="small")
for episode in range(4):
    obs, info = env.reset(seed=episode)
    task = env.unwrapped.task
    action = task.reference if episode % 2 else obs["query"]
    obs, reward, terminated, truncated, info = env.step(action)
    print(f"{info['task_id']:35} {info['verdict']:10} reward {reward:+.3f}")
env.close()
