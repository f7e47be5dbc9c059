import keras
# Scenario: built-in callbacks (the "Training & evaluation with the built-in methods" guide):
# EarlyStopping(monitor="val_loss", patience, restore_best_weights=True),
# ModelCheckpoint(filepath with {epoch}, save_best_only=True) writing .keras files, and
# ReduceLROnPlateau(factor, patience, min_lr), whose learning rate shows in History.
# A noisy task where validation loss stops improving early. Thresholds: training stops before the
# last epoch, the restored weights give the best val_loss, the best checkpoint reloads to the same
# val_loss, and the learning rate was reduced at least once.
import json
import os
import tempfile

import numpy as np
from keras import layers

keras.utils.set_random_seed(10)
rng = np.random.default_rng(0)
x = rng.standard_normal((400, 30)).astype("float32")
y = (x[:, :1] + 0.8 * rng.standard_normal((400, 1))).astype("float32")  # small data, big model: overfits
x_val = rng.standard_normal((200, 30)).astype("float32")
y_val = (x_val[:, :1] + 0.8 * rng.standard_normal((200, 1))).astype("float32")

model = keras.Sequential([keras.Input(shape=(30,)), layers.Dense(128, activation="relu"),
                          layers.Dense(128, activation="relu"), layers.Dense(1)])
model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.003), loss="mse")

checkpoint_dir = tempfile.mkdtemp()
callbacks = [
    keras.callbacks.EarlyStopping(monitor="val_loss", patience=6, restore_best_weights=True, verbose=1),
    keras.callbacks.ModelCheckpoint(filepath=os.path.join(checkpoint_dir, "model_{epoch}.keras"),
                                    save_best_only=True, monitor="val_loss", verbose=0),
    keras.callbacks.ReduceLROnPlateau(monitor="val_loss", factor=0.5, patience=2, min_lr=1e-4, verbose=1),
]
history = model.fit(x, y, epochs=60, batch_size=32, validation_data=(x_val, y_val), callbacks=callbacks, verbose=0)

val_losses = history.history["val_loss"]
best_epoch = int(np.argmin(val_losses)) + 1
restored_val_loss = float(model.evaluate(x_val, y_val, verbose=0))
saved = sorted(os.listdir(checkpoint_dir), key=lambda f: int(f.split("_")[1].split(".")[0]))
reloaded = keras.models.load_model(os.path.join(checkpoint_dir, saved[-1]))
reloaded_val_loss = float(reloaded.evaluate(x_val, y_val, verbose=0))
lrs = [float(v) for v in history.history.get("learning_rate", [])]
print(f"ran {len(val_losses)} epochs, best epoch {best_epoch}, best val_loss {min(val_losses):.4f}, "
      f"restored {restored_val_loss:.4f}, checkpoints {saved}, learning rates {sorted(set(lrs), reverse=True)}")

result = {
    "figures": {
        "best_val_loss": float(min(val_losses)),
        "history_keys": sorted(history.history),
        "last_checkpoint_is_best_epoch": saved[-1] == f"model_{best_epoch}.keras",
        "first_learning_rate": lrs[0] if lrs else None,
    },
    "info": {"epochs_run": len(val_losses), "best_epoch": best_epoch, "checkpoints": len(saved),
             "final_learning_rate": lrs[-1] if lrs else None},
    "checks": {
        "stopped early": len(val_losses) < 60,
        "restored best weights": bool(np.isclose(restored_val_loss, min(val_losses), rtol=1e-4)),
        "best checkpoint reloads": bool(np.isclose(reloaded_val_loss, min(val_losses), rtol=1e-4)),
        "learning rate reduced": bool(lrs and min(lrs) < lrs[0]),
    },
}
print("RESULT " + json.dumps(result))
