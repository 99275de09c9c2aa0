#pragma once
// Line charts as standalone SVG: axes with round-number ticks, light grid,
// axis labels, a legend. Enough for training curves, with no plotting
// library and nothing to install to view them (any browser opens SVG).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include <qrl/core/error.hpp>

namespace qrl::log {

struct ChartSeries {
  std::string name;
  std::string color;  // any SVG colour, e.g. "#1f77b4"
  std::vector<double> x, y;
  bool dashed = false;
};

struct LineChart {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<ChartSeries> series;
  int width = 800;
  int height = 450;

  std::string svg() const;
};

namespace detail {

inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// 1, 2 or 5 times a power of ten, giving about `target` intervals over [lo, hi].
inline double nice_step(double lo, double hi, int target) {
  const double raw = (hi - lo) / std::max(1, target);
  const double power = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (m * power >= raw) return m * power;
  return 10.0 * power;
}

inline std::string tick_label(double v, double step) {
  char buf[32];
  const double a = std::fabs(v);
  if (a >= 1e6 && step >= 1e5)
    std::snprintf(buf, sizeof buf, "%gM", v / 1e6);
  else if (a >= 1e4 && step >= 1e3)
    std::snprintf(buf, sizeof buf, "%gk", v / 1e3);
  else {
    const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  }
  return buf;
}

struct Axis {
  double lo, hi, step;
};

inline Axis make_axis(double lo, double hi, int target, bool from_zero) {
  if (from_zero) {
    lo = std::min(lo, 0.0);
    hi = std::max(hi, 0.0);
  }
  if (!(hi > lo)) {
    const double pad = lo == 0 ? 1.0 : std::fabs(lo) * 0.1;
    lo -= pad;
    hi += pad;
  }
  const double step = nice_step(lo, hi, target);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}

}  // namespace detail

inline std::string LineChart::svg() const {
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : series) {
    require(s.x.size() == s.y.size(), "chart series '", s.name, "' has ", s.x.size(), " x and ", s.y.size(), " y");
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      y_lo = std::min(y_lo, s.y[i]);
      y_hi = std::max(y_hi, s.y[i]);
    }
  }
  const bool empty = !std::isfinite(x_lo);
  if (empty) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  const auto xa = detail::make_axis(x_lo, x_hi, 8, true);
  const auto ya = detail::make_axis(y_lo, y_hi, 6, y_lo >= 0 && y_lo < 0.5 * y_hi);

  const double left = 78, right = 24, top = 48, bottom = 62;
  const double pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double x) { return left + (x - xa.lo) / (xa.hi - xa.lo) * pw; };
  auto py = [&](double y) { return top + (ya.hi - y) / (ya.hi - ya.lo) * ph; };

  std::ostringstream o;
  o.precision(6);
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
    << "\" viewBox=\"0 0 " << width << ' ' << height << "\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << width / 2.0 << "\" y=\"28\" text-anchor=\"middle\" font-size=\"17\" font-weight=\"bold\" fill=\"#222\">"
    << detail::xml_escape(title) << "</text>\n";
  // Grid and ticks.
  o << "<g font-size=\"12\" fill=\"#444\">\n";
  for (double y = ya.lo; y <= ya.hi + ya.step * 1e-6; y += ya.step) {
    const double v = std::fabs(y) < ya.step * 1e-9 ? 0.0 : y;
    o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << py(v) << "\" y2=\"" << py(v)
      << "\" stroke=\"#e4e4e4\"/>\n";
    o << "<text x=\"" << left - 8 << "\" y=\"" << py(v) + 4 << "\" text-anchor=\"end\">"
      << detail::tick_label(v, ya.step) << "</text>\n";
  }
  for (double x = xa.lo; x <= xa.hi + xa.step * 1e-6; x += xa.step) {
    const double v = std::fabs(x) < xa.step * 1e-9 ? 0.0 : x;
    o << "<line x1=\"" << px(v) << "\" x2=\"" << px(v) << "\" y1=\"" << top << "\" y2=\"" << top + ph
      << "\" stroke=\"#f0f0f0\"/>\n";
    o << "<line x1=\"" << px(v) << "\" x2=\"" << px(v) << "\" y1=\"" << top + ph << "\" y2=\"" << top + ph + 5
      << "\" stroke=\"#444\"/>\n";
    o << "<text x=\"" << px(v) << "\" y=\"" << top + ph + 20 << "\" text-anchor=\"middle\">"
      << detail::tick_label(v, xa.step) << "</text>\n";
  }
  o << "</g>\n";
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 16 << "\" text-anchor=\"middle\" font-size=\"14\" fill=\"#222\">"
    << detail::xml_escape(x_label) << "</text>\n";
  o << "<text transform=\"translate(20 " << top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\" font-size=\"14\" fill=\"#222\">"
    << detail::xml_escape(y_label) << "</text>\n";
  // Lines, clipped to the plot area.
  o << "<clipPath id=\"plot\"><rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\"/></clipPath>\n<g clip-path=\"url(#plot)\" fill=\"none\" stroke-width=\"2\" stroke-linejoin=\"round\">\n";
  for (const auto& s : series) {
    std::ostringstream points;
    points.precision(6);
    std::size_t n = 0;
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
      points << (n++ ? " " : "") << px(s.x[i]) << ',' << py(s.y[i]);
    }
    if (n == 1) {
      o << "<circle cx=\"" << points.str().substr(0, points.str().find(',')) << "\" cy=\""
        << points.str().substr(points.str().find(',') + 1) << "\" r=\"3\" fill=\"" << s.color << "\"/>\n";
    } else if (n > 1) {
      o << "<polyline stroke=\"" << s.color << "\"" << (s.dashed ? " stroke-dasharray=\"6 4\"" : "") << " points=\""
        << points.str() << "\"/>\n";
    }
  }
  o << "</g>\n";
  if (empty)
    o << "<text x=\"" << left + pw / 2 << "\" y=\"" << top + ph / 2 << "\" text-anchor=\"middle\" font-size=\"14\" fill=\"#888\">"
      << "no data yet</text>\n";
  // Legend, top left inside the plot.
  if (!series.empty()) {
    double legend_w = 0;
    for (const auto& s : series) legend_w = std::max(legend_w, 7.5 * static_cast<double>(s.name.size()));
    legend_w += 46;
    const double lx = left + 12, ly = top + 10;
    o << "<rect x=\"" << lx << "\" y=\"" << ly << "\" width=\"" << legend_w << "\" height=\"" << 22 * series.size() + 8
      << "\" fill=\"white\" fill-opacity=\"0.85\" stroke=\"#ccc\"/>\n";
    for (std::size_t i = 0; i < series.size(); ++i) {
      const double y = ly + 16 + 22 * static_cast<double>(i);
      o << "<line x1=\"" << lx + 8 << "\" x2=\"" << lx + 32 << "\" y1=\"" << y << "\" y2=\"" << y << "\" stroke=\""
        << series[i].color << "\" stroke-width=\"2.5\"" << (series[i].dashed ? " stroke-dasharray=\"6 4\"" : "")
        << "/>\n";
      o << "<text x=\"" << lx + 40 << "\" y=\"" << y + 4 << "\" font-size=\"13\" fill=\"#222\">"
        << detail::xml_escape(series[i].name) << "</text>\n";
    }
  }
  o << "</svg>\n";
  return o.str();
}

}  // namespace qrl::log
