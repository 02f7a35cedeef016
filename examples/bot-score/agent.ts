/**
 * Bot scoring from the request line and headers: HAProxy sends the method,
 * path, User-Agent, Accept-Language and Accept of each HTTP request; the
 * agent answers `txn.bot.score` (0..100, high is likely a bot) and
 * `txn.bot.reasons` (which rules matched), and HAProxy denies requests that
 * score 50 or more (`haproxy.cfg`).
 *
 * No import is needed: the default export is a function of the context.
 *
 * ```sh
 * spoa --agent examples/bot-score/agent.ts
 * ```
 *
 * @module
 */

import type { AgentContext, Message, Reply } from "../../lib/mod.ts";

/** One rule: its weight and why it matched. */
interface Rule {
  reason: string;
  weight: number;
  test(request: Request): boolean;
}

interface Request {
  method: string;
  path: string;
  userAgent: string;
  language: string;
  accept: string;
}

const TOOLS =
  /\b(curl|wget|python-requests|go-http-client|scrapy|httpclient|libwww|nikto|sqlmap)\b/i;
const CRAWLERS = /(bot|crawler|spider|slurp)\b/i;
const PROBES = /(\/\.env|\/\.git|wp-login\.php|xmlrpc\.php|phpmyadmin|\/cgi-bin\/)/i;

/** The rules, by weight. Tune them to your traffic. */
export const RULES: readonly Rule[] = [
  { reason: "no-user-agent", weight: 50, test: (r) => r.userAgent === "" },
  { reason: "tool", weight: 40, test: (r) => TOOLS.test(r.userAgent) },
  { reason: "crawler", weight: 30, test: (r) => CRAWLERS.test(r.userAgent) },
  { reason: "probe", weight: 50, test: (r) => PROBES.test(r.path) },
  { reason: "no-accept-language", weight: 15, test: (r) => r.language === "" },
  { reason: "no-accept", weight: 10, test: (r) => r.accept === "" },
  {
    reason: "method",
    weight: 20,
    test: (r) => !["GET", "HEAD", "POST", "OPTIONS"].includes(r.method),
  },
];

/**
 * Scores one request.
 *
 * @param request What HAProxy sent.
 * @returns The score (0..100) and the reasons, comma-separated.
 */
export function score(request: Request): { score: number; reasons: string } {
  let total = 0;
  const reasons: string[] = [];
  for (const rule of RULES) {
    if (rule.test(request)) {
      total += rule.weight;
      reasons.push(rule.reason);
    }
  }
  return { score: Math.min(total, 100), reasons: reasons.join(",") };
}

/** A header HAProxy sent; a missing header comes as an empty string or no value. */
function text(message: Message, name: string): string {
  return message.string(name) ?? "";
}

export default function botScore(_context: AgentContext) {
  return {
    "score-request"(message: Message, reply: Reply): void {
      const result = score({
        method: text(message, "method"),
        path: text(message, "path"),
        userAgent: text(message, "ua"),
        language: text(message, "lang"),
        accept: text(message, "accept"),
      });
      reply.setVar("txn", "score", result.score);
      reply.setVar("txn", "reasons", result.reasons);
    },
  };
}
