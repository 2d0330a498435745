"""Every attribute and metric name cascadeflow emits, in one place.

The OpenTelemetry GenAI names are still being renamed upstream; when they move, this module is
the only one to change.
"""

from __future__ import annotations

# GenAI semantic conventions
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_WRITE_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
CONVERSATION_ID = "gen_ai.conversation.id"
AGENT_NAME = "gen_ai.agent.name"
TOOL_NAME = "gen_ai.tool.name"
TOOL_TYPE = "gen_ai.tool.type"
TOOL_CALL_ID = "gen_ai.tool.call.id"
EMBEDDINGS_DIMENSIONS = "gen_ai.embeddings.dimension.count"
# proposed in the GenAI conventions (semantic-conventions-genai), not yet in the Python package
USAGE_COST = "gen_ai.usage.cost"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
ERROR_TYPE = "error.type"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"

# request parameters: (name in the call, attribute, whether the attribute is a `string[]`: a
# single value given is recorded as a list of one)
REQUEST_PARAMS = (
    ("max_tokens", "gen_ai.request.max_tokens", False),
    ("max_completion_tokens", "gen_ai.request.max_tokens", False),
    ("max_output_tokens", "gen_ai.request.max_tokens", False),
    ("temperature", "gen_ai.request.temperature", False),
    ("top_p", "gen_ai.request.top_p", False),
    ("top_k", "gen_ai.request.top_k", False),
    ("frequency_penalty", "gen_ai.request.frequency_penalty", False),
    ("presence_penalty", "gen_ai.request.presence_penalty", False),
    ("seed", "gen_ai.request.seed", False),
    ("n", "gen_ai.request.choice.count", False),
    ("stop", "gen_ai.request.stop_sequences", True),
    ("stream", "gen_ai.request.stream", False),
    ("encoding_format", "gen_ai.request.encoding_formats", True),
    ("dimensions", EMBEDDINGS_DIMENSIONS, False),
)

# litellm's provider prefix -> `gen_ai.provider.name`, the values of the conventions'
# GenAiProviderNameValues; a provider they do not list keeps litellm's name (a custom value)
PROVIDER_NAMES = {
    "openai": "openai", "text-completion-openai": "openai",
    "azure": "azure.ai.openai", "azure_text": "azure.ai.openai", "azure_ai": "azure.ai.inference",
    "bedrock": "aws.bedrock", "vertex_ai": "gcp.vertex_ai", "vertex_ai_beta": "gcp.vertex_ai",
    "gemini": "gcp.gemini", "anthropic": "anthropic", "cohere": "cohere", "cohere_chat": "cohere",
    "mistral": "mistral_ai", "groq": "groq", "deepseek": "deepseek", "xai": "x_ai",
    "perplexity": "perplexity", "watsonx": "ibm.watsonx.ai", "watsonx_text": "ibm.watsonx.ai",
}
TOOL_TYPE_FUNCTION = "function"  # a `@tool`: a function the application runs

# operation names
OP_CHAT = "chat"
OP_TEXT = "text_completion"
OP_EMBEDDINGS = "embeddings"
OP_INVOKE_AGENT = "invoke_agent"
OP_EXECUTE_TOOL = "execute_tool"

# cascadeflow's own attributes
CF_ACTION = "cascadeflow.action"
CF_REASON = "cascadeflow.reason"
CF_APPLIED = "cascadeflow.applied"
CF_MODE = "cascadeflow.mode"
CF_COST = "cascadeflow.cost_usd"
CF_PRICE_KNOWN = "cascadeflow.price_known"
CF_BUDGET_REMAINING = "cascadeflow.budget_remaining"
CF_REQUESTED_MODEL = "cascadeflow.requested_model"
CF_TARGET_MODEL = "cascadeflow.target_model"
CF_TOOLS_DENIED = "cascadeflow.tools_denied"
CF_DEGRADED = "cascadeflow.degraded"
CF_SESSION_ID = "cascadeflow.session.id"
CF_STEP = "cascadeflow.step"
CF_STATUS = "cascadeflow.status"
CF_USAGE_ESTIMATED = "cascadeflow.usage_estimated"
CF_PROJECT = "cascadeflow.project"
CF_USER = "cascadeflow.user"
CF_STEPS = "cascadeflow.steps"
CF_STOPPED = "cascadeflow.stopped"

# metrics
METRIC_DURATION = "gen_ai.client.operation.duration"
METRIC_TOKENS = "gen_ai.client.token.usage"
METRIC_COST = "cascadeflow.cost"
METRIC_DECISIONS = "cascadeflow.decisions"
METRIC_BUDGET_UTILIZATION = "cascadeflow.budget.utilization"
METRIC_ALERTS = "cascadeflow.alerts"
METRIC_BREAKER_CHANGES = "cascadeflow.breaker.state_changes"

# bucket boundaries recommended by the GenAI conventions
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216,
                 67108864)
# a share of the budget: tenths up to all of it, then overspend (observe mode, clamped estimates);
# the SDK's default boundaries (0, 5, 10, 25, ...) would put every session in one bucket
UTILIZATION_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.25, 1.5, 2.0, 5.0)
