#pragma once
// The keyboard of a canvas game: key names (as a game config's actions list
// them) to the KeyboardEvent fields a page reads, the two ways a key event
// reaches the page (the page runtime's key() or CDP's trusted
// Input.dispatchKeyEvent), and which keys an env holds down.
#include <algorithm>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include <qrl/core/error.hpp>

namespace qrl::envs {

struct KeyDef {
  std::string key;
  std::string code;
  int key_code = 0;
  std::string text;
};

inline KeyDef key_def(const std::string& name) {
  static const std::pair<const char*, KeyDef> table[] = {
      {"ArrowUp", {"ArrowUp", "ArrowUp", 38, ""}},       {"ArrowDown", {"ArrowDown", "ArrowDown", 40, ""}},
      {"ArrowLeft", {"ArrowLeft", "ArrowLeft", 37, ""}}, {"ArrowRight", {"ArrowRight", "ArrowRight", 39, ""}},
      {"Space", {" ", "Space", 32, " "}},                {"Enter", {"Enter", "Enter", 13, "\r"}},
      {"Escape", {"Escape", "Escape", 27, ""}},          {"Shift", {"Shift", "ShiftLeft", 16, ""}},
      {"Control", {"Control", "ControlLeft", 17, ""}},   {"Tab", {"Tab", "Tab", 9, ""}},
  };
  for (const auto& [n, def] : table)
    if (name == n) return def;
  if (name.size() == 1) {
    const char ch = name[0];
    if (ch >= 'a' && ch <= 'z') return {name, std::string("Key") + char(ch - 32), ch - 32, name};
    if (ch >= 'A' && ch <= 'Z') return {std::string(1, char(ch + 32)), "Key" + name, ch, std::string(1, char(ch + 32))};
    if (ch >= '0' && ch <= '9') return {name, "Digit" + name, ch, name};
  }
  fail("unknown key '", name,
       "' (known: ArrowUp, ArrowDown, ArrowLeft, ArrowRight, Space, Enter, Escape, Shift, Control, Tab, a-z, 0-9)");
}

// One entry of the key list that __qrl.step() passes to __qrl.key(type,
// key, code, keyCode, text): key_events = "page".
inline nlohmann::json page_key_event(bool down, const KeyDef& k) {
  return nlohmann::json::array({down ? "keydown" : "keyup", k.key, k.code, k.key_code, k.text});
}

// Input.dispatchKeyEvent's parameters, a trusted event as from a real
// keyboard: key_events = "browser", for games that check isTrusted.
inline nlohmann::json browser_key_event(bool down, const KeyDef& k) {
  nlohmann::json p{{"type", down ? "keyDown" : "keyUp"}, {"key", k.key}, {"code", k.code},
                   {"windowsVirtualKeyCode", k.key_code}, {"nativeVirtualKeyCode", k.key_code}};
  if (down && !k.text.empty()) p["text"] = k.text;
  return p;
}

// The keys held down now. Holding an action's keys releases the others and
// presses the new ones, so a key held over several steps is one long press,
// as a player's. `send(down, key)` delivers each change.
class HeldKeys {
 public:
  template <class Send>
  void hold(const std::vector<KeyDef>& wanted, Send&& send) {
    for (auto it = held_.begin(); it != held_.end();) {
      const bool keep = std::any_of(wanted.begin(), wanted.end(), [&](const auto& k) { return k.code == it->code; });
      if (!keep) {
        send(false, *it);
        it = held_.erase(it);
      } else {
        ++it;
      }
    }
    for (const auto& k : wanted) {
      if (std::none_of(held_.begin(), held_.end(), [&](const auto& h) { return h.code == k.code; })) {
        send(true, k);
        held_.push_back(k);
      }
    }
  }

  template <class Send>
  void release_all(Send&& send) {
    for (const auto& k : held_) send(false, k);
    held_.clear();
  }

  // The page that held them is gone (a new browser, a reloaded page).
  void forget() { held_.clear(); }

 private:
  std::vector<KeyDef> held_;
};

}  // namespace qrl::envs
