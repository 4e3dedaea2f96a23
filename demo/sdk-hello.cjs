// The "plain SDK" side of the demo: one messages.create call with @anthropic-ai/sdk.
// It reads ANTHROPIC_BASE_URL and ANTHROPIC_API_KEY / ANTHROPIC_AUTH_TOKEN from the environment.
const Anthropic = require("@anthropic-ai/sdk");

async function main() {
  const client = new Anthropic();
  const stream = process.argv.includes("--stream");
  const msg = await client.messages.create({
    model: "claude-sonnet-4-5",
    max_tokens: 64,
    messages: [{ role: "user", content: "hi" }],
    stream,
  });
  if (stream) {
    for await (const event of msg) {
      if (event.type === "content_block_delta") process.stdout.write(event.delta.text);
    }
    process.stdout.write("\n");
  } else {
    console.log(msg.content.map((b) => b.text).join(""));
  }
}

main().catch((err) => {
  console.error(`SDK error: ${err.status ?? ""} ${err.message}`);
  process.exit(1);
});
